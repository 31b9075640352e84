"""The ``ehc`` command: composed here from each package's own typer app."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from loadtests.cli import app as loadtest_app
from services.cli import app as services_app

from .commands import app as twin_app
from .commands import report_app

app = typer.Typer(no_args_is_help=True, rich_markup_mode="markdown",
                  help="ehc-twin: card network, hospital twin, load tests")
app.add_typer(services_app)
app.add_typer(twin_app, name="twin")
app.add_typer(loadtest_app, name="loadtest")
app.add_typer(report_app)
console = Console()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"ehc-twin {version('ehc-twin')}")
        raise typer.Exit()


@app.callback()
def _root(_: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit")) -> None:
    """ehc-twin: card network, hospital twin, load tests."""
    import sys

    from services.sdk import get_settings

    if "--help" not in sys.argv[1:]:  # help is read whatever the environment says
        get_settings()  # a bad EHC_* variable is refused before any command starts work


@app.command()
def demo(
    var_dir: Path = typer.Option(Path("var"), help="where the demo keeps its databases"),
    residents: int = typer.Option(220, min=20, max=100_000),
    replications: int = typer.Option(3, min=2, max=100, help="twin replications"),
    workers: int = typer.Option(2, min=1, max=64, help="twin processes"),
) -> None:
    """The main job of make run: the card network end to end, then the twin."""
    from services.sdk import run_demo

    from .demo import twin_demo

    run_demo(var_dir, residents, console)
    twin_demo(console, replications=replications, workers=workers)
    console.print(NEXT_STEPS, highlight=False, soft_wrap=True)


NEXT_STEPS = """
[bold]What to try next[/] (the guides are in docs/: planners.md, engineers.md, analysts.md)
  # planners: one hospital with 60 % card users, then the 11 cities
  ehc twin run scenarios/tertiary_adoption_60.yaml
  ehc twin province scenarios/province/zhejiang.yaml --workers 2
  # engineers: the card network that stays up (docs at /docs, the H5 page at /channel/)
  ehc serve
  make loadtest
  # analysts: the notebooks, executed, in results/reports/index.html
  make report"""


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, ``timeout``, a CI job's end) stops a command as Ctrl-C does, so
    its clean-ups run: a load test's servers and Locust went on as orphans. A process
    forked from this one (a twin worker) keeps the default: it just ends."""
    import os
    import signal

    parent = os.getpid()

    def interrupt(signum: int, frame: object) -> None:
        if os.getpid() != parent:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main() -> None:
    from services.sdk import SettingsInvalid
    from twin.model.day import RunawayDay

    errors = Console(stderr=True, soft_wrap=True)
    _stop_on_sigterm()
    try:
        app()
    except RunawayDay as exc:  # a scenario whose day never ends: say which station
        errors.print(f"[red]scenario error[/]: {exc}")
        raise SystemExit(2) from None
    except SettingsInvalid as exc:  # an EHC_* variable out of range or misspelt
        errors.print(f"[red]settings error[/]: {escape(str(exc))}", highlight=False)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
