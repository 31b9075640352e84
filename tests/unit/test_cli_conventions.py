"""CLI conventions: a version, days in China Standard Time defaulting to today, no
required flag without an alternative, errors on stderr."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path


def _ehc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twin.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path) -> None:
    """A misspelt or out-of-range ``EHC_*`` variable: every command, and a server started
    by uvicorn itself (as the systemd units do), says which and why in one line, exit 2,
    before anything is written; help is still read."""
    import os

    import pytest

    from services.common.settings import Settings, SettingsInvalid
    from tests.stack import free_port

    assert Settings(log_level="debug").log_level == "DEBUG"
    with pytest.raises(SettingsInvalid, match="EHC_LOG_LEVEL='LOUD': a log level"):
        Settings(log_level="LOUD")
    env = {**os.environ, "EHC_VAR_DIR": str(tmp_path / "var"), "EHC_SYNC_INTERVAL_S": "-1",
           "EHC_QR_FORMAT": "bogus"}
    named = ("EHC_SYNC_INTERVAL_S='-1': Input should be greater than or equal to 0",
             "EHC_QR_FORMAT='bogus': Input should be 'hardened' or 'national'")
    port = str(free_port())  # not 9, the port other tests find nobody at
    for command in (["twin.cli", "serve", "--port", port], ["twin.cli", "seed"],
                    ["twin.cli", "loadtest", "--out", str(tmp_path / "run")],
                    ["uvicorn", "services.app:create_app", "--factory", "--port", port]):
        res = subprocess.run([sys.executable, "-m", *command], env=env, capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 2, (command, res.stderr)
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 2 and all(n in res.stderr for n in named), (command, lines)
        assert "Traceback" not in res.stderr and not os.listdir(tmp_path), command
    res = subprocess.run([sys.executable, "-m", "twin.cli", "serve", "--help"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--port" in res.stdout


def test_an_output_that_cannot_be_written_is_refused_before_the_work(tmp_path) -> None:
    """An output path under a file (or where the user may not write): one line naming it,
    exit 2, asked before the run (a seed of 1,000 residents, a fusion, a simulation), not
    a traceback at its end."""
    import os

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {**os.environ, "EHC_VAR_DIR": str(tmp_path / "var")}
    for args, named in (
            (["seed", "--out", str(blocker / "seed.json")], "--out"),
            (["fuse", "--all", "--report", str(blocker / "refusals.csv")], "--report"),
            (["twin", "run", str(Path(__file__).resolve().parents[2] / "scenarios" /
                                 "small_clinic.yaml"), "--out", str(blocker / "run")],
             "--out")):
        res = subprocess.run([sys.executable, "-m", "twin.cli", *args], env=env, text=True,
                             capture_output=True, timeout=120)
        assert res.returncode == 2, (args, res.stderr)
        assert named in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"], args


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


def test_help_flows_sentences_and_keeps_placeholders() -> None:
    """``--help`` reflows a docstring's hard line breaks (markdown markup), and a
    placeholder such as ``<SYSTEM>`` survives it (markdown would take it for a tag)."""
    import os

    wide = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    listing = subprocess.run([sys.executable, "-m", "twin.cli", "--help"], env=wide,
                             capture_output=True, text=True, timeout=120).stdout
    assert "a channel app and carded residents; write FILE." in listing
    serve = subprocess.run([sys.executable, "-m", "twin.cli", "serve", "--help"], env=wide,
                           capture_output=True, text=True, timeout=120).stdout
    assert "EHC_<SYSTEM>_URL" in serve


def test_placeholders_in_help_are_code() -> None:
    """Every ``<NAME>`` in a command's or option's help is in a code span, so neither
    ``--help`` nor the generated reference page drops it as an HTML tag."""
    import re

    import typer

    from twin.cli import app

    loose: list[str] = []

    def walk(cmd, path: str) -> None:
        texts = [cmd.help or "", *(getattr(p, "help", "") or "" for p in cmd.params)]
        for text in texts:
            if re.search(r"<[A-Za-z]", re.sub(r"`[^`]*`", "", text)):
                loose.append(f"{path}: {text}")
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "ehc")
    assert not loose, loose


def test_a_stack_a_command_starts_in_process_keeps_its_access_lines_to_itself(
        tmp_path) -> None:
    """A command on the configured store (no ``--url``) starts the stack in its own
    process: its one access line a request (thousands for a seed) stays out of the
    command's output, unless ``EHC_LOG_LEVEL`` asks for it."""
    import os

    env = {**os.environ, "EHC_VAR_DIR": str(tmp_path / "var")}
    env.pop("EHC_LOG_LEVEL", None)
    argv = [sys.executable, "-m", "twin.cli", "credentials", "list", "--kind", "terminals"]
    quiet = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert "ehc.access" not in quiet.stdout + quiet.stderr
    loud = subprocess.run(argv, env={**env, "EHC_LOG_LEVEL": "INFO"}, capture_output=True,
                          text=True, timeout=120)
    assert loud.returncode == 0 and "ehc.access" in loud.stdout + loud.stderr


def test_an_infinite_or_undefined_number_is_refused_before_the_work(tmp_path) -> None:
    """``inf`` passed every lower bound: an arrival rate of inf, or hours of inf, ran a
    simulation that never ended; a coefficient of variation of inf was a traceback."""
    station = ["twin", "station", "--servers", "1", "--arrival-rate", "0.5",
               "--service-mean", "1"]
    for args, option in (
            ([*station[:4], "--arrival-rate", "inf", "--service-mean", "1"], "--arrival-rate"),
            ([*station, "--hours", "inf"], "--hours"),
            ([*station, "--service", "gamma", "--service-cv", "inf"], "--service-cv"),
            ([*station, "--service", "gamma", "--service-cv", "nan"], "--service-cv"),
            (["loadtest", "--spawn-rate", "inf", "--out", str(tmp_path / "a")], "--spawn-rate"),
            (["loadtest", "--slo-max-failure-ratio", "nan", "--out", str(tmp_path / "b")],
             "--slo-max-failure-ratio"),
            (["loadtest", "capacity", "--headroom", "inf", "--out", str(tmp_path / "c")],
             "--headroom")):
        res = _ehc(*args)
        assert res.returncode == 2, (args, res.stdout[-500:], res.stderr[-500:])
        assert f"Invalid value for '{option}'" in res.stderr and "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())
