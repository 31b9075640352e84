"""``ehc report`` / ``make report``: execute the analyst notebooks with papermill on the
latest results (or small default runs when none exist), render HTML without code cells
and an index page linking them."""

from __future__ import annotations

import html
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

NOTEBOOKS = {
    "flow_comparison": "One hospital: traditional against the online fused-card flow",
    "province_rollout": "The province: the fused card across the 11 cities",
    "loadtest_report": "Load test: the QR verification hot path",
    "network_usage": "The network's own records: issuance, use, settlement and quality",
    "model_validation": "The twin's engine against queueing theory",
}
ROOT = Path(__file__).resolve().parents[2]

SMALL = {  # parameters for a quick run (tests, a first look)
    "flow_comparison": {"adoption_levels": [0.0, 1.0], "replications": 2, "daily_visits": 1500,
                        "workers": 1},
    "province_rollout": {"province": "tests/data/small_province.yaml", "month": 12,
                         "results_dir": "results/reports/small-province-none",
                         "sweep_levels": [0.0, 1.0], "sweep_replications": 2,
                         "sweep_daily_visits": 800, "workers": 1},
    "loadtest_report": {},
    "network_usage": {"store": "results/reports/network-usage-store", "visits": 200},
    "model_validation": {"hours": 40.0, "replications": 4, "loads": [0.5, 0.8]},
}


def render_html(executed: Path, target: Path) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    target.write_text(body, encoding="utf-8")
    return target


def write_index(out: Path, done: dict[str, Path]) -> Path:
    items = "\n".join(
        f'<li><a href="{html.escape(p.name)}">{html.escape(NOTEBOOKS[name])}</a> '
        f"(<code>{html.escape(name)}.ipynb</code>)</li>" for name, p in done.items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ehc-twin reports</title>
<style>body{{font-family:sans-serif;max-width:48em;margin:2em auto;line-height:1.5}}</style>
</head><body>
<h1>ehc-twin reports</h1>
<p>Executed {time.strftime("%Y-%m-%d %H:%M:%S")} from the notebooks in <code>notebooks/</code>.</p>
<ul>
{items}
</ul>
</body></html>
"""
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


class ReportFailed(Exception):
    """A notebook whose cell raised: which, the error, and where the notebook as executed
    (with the error in it) is."""


def local_kernels(sockets: Path, log: IO[bytes] | None = None) -> type:
    """A kernel manager whose kernels talk over Unix sockets in ``sockets`` (a private
    temporary folder), not TCP ports on 127.0.0.1 that any local user may reach; the
    kernel said so on every report, as a warning about eavesdropping. With ``log``, the
    kernels' own stderr goes there, not to the terminal (a kernel stopped with its
    report printed a traceback about its closed sockets)."""
    from jupyter_client.manager import AsyncKernelManager

    class LocalKernels(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport = "ipc"
            self.ip = str(sockets / "kernel")  # its sockets are kernel-<port> there

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            if log is not None:
                kw["stderr"] = log
            await super()._async_launch_kernel(kernel_cmd, **kw)

    return LocalKernels


def build_reports(out: Path = Path("results/reports"), *, small: bool = False,
                  only: list[str] | None = None, overrides: dict[str, dict] | None = None,
                  progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Each notebook executed into ``out`` and rendered; the index links those finished.
    A notebook whose cell raises stops the run (``ReportFailed``); one stopped by Ctrl-C
    or SIGTERM is removed, half executed, and the index links the reports before it."""
    import papermill as pm
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    out = out if out.is_absolute() else ROOT / out
    out.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path] = {}
    cells_bar = sys.stderr.isatty()  # a person watching: each notebook's cells as a bar
    with tempfile.TemporaryDirectory(prefix="ehc-kernels-") as sockets, \
            (Path(sockets) / "kernels.log").open("wb") as kernel_log:
        kernels = local_kernels(Path(sockets), kernel_log)
        try:
            for name in only or list(NOTEBOOKS):
                params = dict(SMALL[name]) if small else {}
                params["figures_dir"] = str(out / "figures" / name)
                params.update((overrides or {}).get(name, {}))
                executed = out / f"{name}.ipynb"
                if progress:
                    progress(name)
                try:
                    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"),
                                        str(executed), parameters=params, cwd=str(ROOT),
                                        kernel_name="python3",
                                        progress_bar=progress is not None and cells_bar,
                                        kernel_manager_class=kernels)
                except PapermillExecutionError as exc:
                    raise ReportFailed(
                        f"{name}.ipynb failed in cell {exc.exec_count}: {exc.ename}: "
                        f"{exc.evalue} (the notebook as executed, with the error: "
                        f"{executed})") from None
                except DeadKernelError as exc:  # killed, out of memory
                    raise ReportFailed(f"{name}.ipynb: its kernel died ({exc})") from None
                except KeyboardInterrupt:
                    executed.unlink(missing_ok=True)  # half executed: no report
                    raise
                done[name] = render_html(executed, out / f"{name}.html")
        finally:
            write_index(out, done)
    return done
