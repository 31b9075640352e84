"""The planners' page in real Chromium: a run started from the page, its progress shown,
its figures read back from the page equal to the run's own table, the plots loaded, the
download there; a bad change refused with a message."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from twin.ui.app import build_ui

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture()
def page_url(tmp_path: Path):
    app = build_ui(ROOT / "scenarios", tmp_path / "runs")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def test_the_api_refuses_bad_changes(page_url: str) -> None:
    bad = httpx.post(f"{page_url}/api/runs", json={"scenario": "small_clinic.yaml",
                                                    "changes": {"online.slot_length": 30}})
    assert bad.status_code == 422 and "unit" in bad.json()["detail"]
    unknown = httpx.post(f"{page_url}/api/runs", json={"scenario": "../etc/passwd"})
    assert unknown.status_code == 422
    assert httpx.get(f"{page_url}/api/runs/nope").status_code == 404


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian: "
                    "apt-get install chromium); .ci/run installs it")
def test_a_planner_runs_a_what_if_from_the_page(page_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.goto(page_url + "/")
        page.wait_for_function("document.getElementById('scenario').options.length > 3")
        page.select_option("#scenario", "small_clinic.yaml")
        page.fill("#adoption", "60")
        page.fill("#reg", "3")
        page.fill("#reps", "2")
        page.click("#run-btn")
        page.wait_for_selector("#results:not(.hidden)", timeout=120_000)
        saved = page.locator("tr[data-kpi=time_saved] td").all_text_contents()
        page.wait_for_function("document.getElementById('waits').naturalWidth > 0")
        page.wait_for_function("document.getElementById('queues').naturalWidth > 0")
        page.screenshot(path=str(tmp_path / "ui.png"), full_page=True)
        href = page.get_attribute("#download", "href")
        page.fill("#closing", "25:00")  # a bad change: refused with a message
        page.click("#run-btn")
        page.wait_for_function("document.getElementById('error').textContent !== ''")
        assert "Not run" in (page.text_content("#error") or "")
        browser.close()
    assert href is not None
    run_id = href.split("/")[2]
    run = httpx.get(f"{page_url}/api/runs/{run_id}").json()
    assert run["changes"]["resources.registration_windows"] == 3 and run["state"] == "finished"
    row = next(r for r in run["summary"] if r["kpi"] == "time_saved")
    assert saved[1] == f"{row['mean']:.1f}"  # the page shows the run's own figure
    zipped = httpx.get(f"{page_url}/{href}")
    assert zipped.status_code == 200 and zipped.content[:2] == b"PK"
    assert (tmp_path / "ui.png").stat().st_size > 20_000


def test_the_page_on_a_port_in_use_says_so_before_its_address(tmp_path: Path) -> None:
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "ui", "--port",
                              str(port), "--out", str(tmp_path / "runs")],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in res.stderr
    assert "planners' page" not in res.stdout and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "ui", "--port", "70000",
                          "--out", str(tmp_path / "runs")], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)  # the socket layer would wrap it to 4464
    assert res.returncode == 2 and "--port" in res.stderr, res.stderr
