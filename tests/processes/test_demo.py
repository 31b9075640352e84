"""``make run``'s main job, ``ehc demo``, end to end: the card network over real HTTP,
then the twin comparing the same people in both flows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_runs_the_network_and_the_twin(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "twin.cli", "demo", "--var-dir", str(tmp_path / "var"),
         "--residents", "40", "--replications", "2", "--workers", "1"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"})
    out = run.stdout
    assert run.returncode == 0, out[-3000:] + run.stderr[-3000:]
    assert "Card network" in out and "Scans at one hospital per city" in out
    assert "the same people in both flows" in out and "Time saved per visit" in out
    for refusal in ("QR_TAMPERED", "QR_REPLAYED", "CLOCK_SKEW", "CARD_LOST",
                    "STATIC_CODE_REFUSED", "QR_MALFORMED", "CONSENT_REQUIRED"):
        assert refusal in out, refusal
    assert (tmp_path / "results" / "twin" / "demo" / "visit_time_ecdf.png").stat().st_size \
        > 10_000
    # it ends with what to try next, and names no address of the server it stopped
    assert out.rstrip().endswith("make report") and "What to try next" in out
    assert "http://127.0.0.1:" not in out
    assert "The phone as the hospital's kiosk" in out and "me, the holder" in out
    assert "my reports" in out and "paid by the phone's wallet" in out
