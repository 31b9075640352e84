"""The analyst notebooks execute on small parameters, render to HTML with their figures,
and the HTML opens in a browser."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from twin.report.notebooks import NOTEBOOKS, build_reports

MIN_FIGURES = {"flow_comparison": 6, "province_rollout": 4, "loadtest_report": 1,
               "network_usage": 3, "model_validation": 2}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    overrides = {
        "province_rollout": {"results_dir": str(out / "no-province-results")},
        "loadtest_report": {"search_dir": str(out / "no-loadtests"),
                            "sample_dir": str(out / "loadtest-sample"),
                            "capacity_file": str(out / "none.json"),
                            "province_peaks": str(out / "none.json")},
        "network_usage": {"store": str(out / "network-store")},
    }
    return out, build_reports(out, small=True, overrides=overrides)


@pytest.mark.slow
def test_every_notebook_executes_with_its_figures(reports) -> None:
    out, done = reports
    assert set(done) == set(NOTEBOOKS)
    for name in NOTEBOOKS:
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.output_type == "error"], name
        figures = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(figures) >= MIN_FIGURES[name], (name, len(figures))
        page = (out / f"{name}.html").read_text()
        assert page.count("data:image/png;base64") >= MIN_FIGURES[name]
        assert "Traceback" not in page
    index = (out / "index.html").read_text()
    assert all(f'href="{n}.html"' in index for n in NOTEBOOKS)


@pytest.mark.slow
def test_reports_speak_plainly(reports) -> None:
    """A summary paragraph first, a quick-run banner on small runs, no paper comparison
    for a test province, human column headings without an index column, no warnings."""
    out, _ = reports
    for name in NOTEBOOKS:
        page = (out / f"{name}.html").read_text()
        assert "Summary." in page and "Quick run, not for decisions" in page, name
        assert page.index("Summary.") < page.index("<h2"), name  # the summary comes first
        nb = nbformat.read(out / f"{name}.ipynb", as_version=4)
        streams = [o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.output_type == "stream"]
        assert not [s for s in streams if "Warning" in s or "warning" in s], (name, streams)
    province = (out / "province_rollout.html").read_text()
    assert "Not compared: the paper's figures are for Zhejiang" in province
    assert "Zhejiang's 11 cities</h1>" not in province
    assert "minutes saved per visit" in province and "visits_per_day" not in province
    assert "days saved a year" in province


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                    "(Debian: apt-get install chromium); .ci/run installs it")
def test_reports_open_in_a_browser(reports, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    assert CHROMIUM is not None
    out, _ = reports
    for page in ("index.html", "flow_comparison.html"):
        shot = tmp_path / f"{page}.png"
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-quic", "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                        f"--screenshot={shot}", (out / page).as_uri()],
                       capture_output=True, timeout=120, check=False)
        assert shot.exists() and shot.stat().st_size > 5_000, page
        pixels = mpimg.imread(shot)
        assert pixels.std() > 0.02, f"{page} rendered blank"


def test_notebook_kernels_listen_on_private_sockets_not_tcp(tmp_path: Path) -> None:
    """The kernels that execute the reports talk over Unix sockets in a private folder:
    over TCP any local user could reach them (and each warned of eavesdropping)."""
    import papermill as pm

    from twin.report.notebooks import local_kernels

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import json\nfrom ipykernel import get_connection_file\n"
        "info = json.load(open(get_connection_file()))\nprint(info['transport'], info['ip'])")]
    nbformat.write(nb, tmp_path / "probe.ipynb")
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    pm.execute_notebook(str(tmp_path / "probe.ipynb"), str(tmp_path / "done.ipynb"),
                        kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                        kernel_manager_class=local_kernels(sockets))
    printed = nbformat.read(tmp_path / "done.ipynb", as_version=4).cells[0].outputs[0].text
    assert printed.split() == ["ipc", str(sockets / "kernel")]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("kernel")]


def test_a_report_that_fails_says_which_and_where(tmp_path: Path) -> None:
    """A cell that raises stops the run with the notebook, the cell and the error, and the
    notebook as executed is kept to read; the index links what finished before it."""
    from twin.report.notebooks import ReportFailed

    with pytest.raises(ReportFailed, match=r"model_validation.ipynb failed in cell \d+: "
                       r"TypeError: .*model_validation.ipynb\)"):
        build_reports(tmp_path, small=True, only=["model_validation"],
                      overrides={"model_validation": {"loads": ["high"]}})
    assert (tmp_path / "model_validation.ipynb").exists()
    assert (tmp_path / "index.html").exists()
    assert not (tmp_path / "model_validation.html").exists()


def test_a_report_stopped_midway_keeps_what_finished(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl-C) while a notebook runs: exit 130 in one line, no traceback from
    the kernel whose sockets close, the half-executed notebook removed, no kernel left."""
    import os
    import signal
    import sys
    import time

    out = tmp_path / "reports"
    proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "report", "--only",
                             "model_validation", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "model_validation.ipynb").exists():  # its kernel is at work
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
        assert "interrupted" in err and "Traceback" not in err, err[-2000:]
        assert not (out / "model_validation.ipynb").exists()
        time.sleep(1)
        ps = subprocess.run(["ps", "-eo", "sid="], capture_output=True, text=True).stdout
        assert str(proc.pid) not in ps.split(), "a kernel outlived its report"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_report_command_says_a_failure_in_one_line(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from twin.cli import app
    from twin.report import notebooks

    def failing(*args, **kwargs):
        raise notebooks.ReportFailed("x.ipynb failed in cell 3: ValueError: no [data]")

    monkeypatch.setattr(notebooks, "build_reports", failing)
    res = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1, res.output
    assert "report failed: x.ipynb failed in cell 3: ValueError: no [data]" in " ".join(
        res.output.split())


def test_a_kernel_that_dies_is_a_failed_report(tmp_path: Path, monkeypatch) -> None:
    from twin.report import notebooks

    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os\nos._exit(3)")]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nbformat.write(nb, tmp_path / "notebooks" / "model_validation.ipynb")
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    with pytest.raises(notebooks.ReportFailed, match=r"model_validation\.ipynb: its kernel died"):
        notebooks.build_reports(tmp_path / "out", only=["model_validation"])
