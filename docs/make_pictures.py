"""Draw the planners' guide's pictures (docs/img/) with the commands a planner runs.

    python docs/make_pictures.py [optimise] [sweep] [rollout] [ui]

Each picture is the plot a command writes (the roll-out's is the whole path, months 0 to
36: about nine minutes on two workers); the page's is a screenshot of `ehc twin ui` in
headless Chromium after a what-if run from the page."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"
EHC = [sys.executable, "-m", "twin.cli", "twin"]


def _run(args: list[str], out: Path) -> Path:
    subprocess.run([*EHC, *args, "--out", str(out), "--force"], check=True, cwd=ROOT)
    return out


def optimise(tmp: Path) -> None:
    out = _run(["optimise", "scenarios/tertiary_baseline.yaml", "--target",
                "p90 wait <= 10 min"], tmp / "optimise")
    shutil.copy(out / "schedule.png", IMG / "optimise.png")


def sweep(tmp: Path) -> None:
    out = _run(["sweep", "scenarios/tertiary_adoption_60.yaml", "--set",
                "resources.pharmacy_windows=20,25,30", "--set",
                "online.prepaid_dispense_factor=0.5,1.0", "-r", "3"], tmp / "sweep")
    shutil.copy(out / "sweep_wait_pharmacy.png", IMG / "sweep.png")


def rollout(tmp: Path) -> None:
    out = _run(["rollout", "scenarios/province/zhejiang.yaml", "--months",
                ",".join(str(m) for m in range(37)), "--workers", "2"], tmp / "rollout")
    shutil.copy(out / "rollout.png", IMG / "rollout.png")


def ui(tmp: Path) -> None:
    import uvicorn
    from playwright.sync_api import sync_playwright

    from twin.ui.app import build_ui

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("headless Chromium is needed (Debian: apt-get install chromium)")
    server = uvicorn.Server(uvicorn.Config(build_ui(ROOT / "scenarios", tmp / "runs"),
                                           port=8071, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium,
                                     args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        page.goto("http://127.0.0.1:8071/")
        page.wait_for_function("document.getElementById('scenario').options.length > 3")
        page.select_option("#scenario", "secondary_baseline.yaml")
        page.fill("#adoption", "60")
        page.fill("#reps", "3")
        page.click("#run-btn")
        page.wait_for_selector("#results:not(.hidden)", timeout=300_000)
        page.wait_for_function("document.getElementById('waits').naturalWidth > 0")
        page.wait_for_function("document.getElementById('queues').naturalWidth > 0")
        page.screenshot(path=str(IMG / "ui.png"), full_page=True)
        browser.close()
    server.should_exit = True


PICTURES = {"optimise": optimise, "sweep": sweep, "rollout": rollout, "ui": ui}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(PICTURES)
    unknown = set(chosen) - set(PICTURES)
    if unknown:
        sys.exit(f"unknown picture(s) {', '.join(sorted(unknown))}: choose from "
                 f"{', '.join(PICTURES)}")
    IMG.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            PICTURES[name](Path(tmp))
            print("drew", IMG / f"{name}.png")
