"""CLI conventions: a version, days in China Standard Time defaulting to today, no
required flag without an alternative, errors on stderr."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def _ehc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_version() -> None:
    res = _ehc("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"ehc-twin {version('ehc-twin')}"


def test_a_bad_day_is_an_error_on_stderr() -> None:
    for command in (("reconcile", "settlements"), ("audit", "verify")):
        res = _ehc(*command, "--date", "2026-02-30", "--url", "http://127.0.0.1:9",
                   "--admin-token", "x")
        assert res.returncode == 2 and "not a day" in res.stderr and not res.stdout


def test_days_are_china_standard_time() -> None:
    from datetime import UTC, datetime

    from services.common.cst import cst_day_span

    start, end = cst_day_span(datetime(2026, 11, 29).date())
    assert start == datetime(2026, 11, 28, 16, 0) and end == datetime(2026, 11, 29, 16, 0)
    assert start.tzinfo is None and datetime.now(UTC).tzinfo is not None


def test_help_offers_the_dry_run_beside_all() -> None:
    res = _ehc("fuse", "--help")
    assert res.returncode == 0 and "--dry-run" in res.stdout and "--in-flight" in res.stdout


def test_help_is_plain_sentences() -> None:
    """No reStructuredText markup in what --help prints."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs/reference/cli.md").read_text()
    assert "``" not in page and ":func:" not in page and ":class:" not in page
