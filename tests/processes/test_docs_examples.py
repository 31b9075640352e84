"""Every Python example in the README and the docs runs as written, in order within its
page, against what the page says to start from: `ehc serve` and `ehc seed` in a folder
holding `var/` (a doctest-style runner over the Markdown)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.sdk import spawn_server, stop_server
from tests.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def examples(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


def test_the_runner_finds_the_examples() -> None:
    assert sum(len(examples(p)) for p in PAGES) >= 2


@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=lambda p: p.name)
def test_the_examples_of_a_page_run_as_written(tmp_path: Path, page: Path) -> None:
    var = tmp_path / "var"
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT)}
    port = free_port()
    server = spawn_server(env, port)
    try:
        url = f"http://127.0.0.1:{port}"
        token = deployment_secret(Settings(var_dir=var), "admin_token")
        seeded = subprocess.run([sys.executable, "-m", "twin.cli", "seed", "--residents", "12",
                                 "--url", url, "--admin-token", token, "--out",
                                 "var/seed.json"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=300)
        assert seeded.returncode == 0, seeded.stderr
        script = "\n\n".join(examples(page))  # one namespace per page, in order
        ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert ran.returncode == 0, f"{page.name}:\n{ran.stderr[-3000:]}"
    finally:
        stop_server(server)
