"""Planner input as people write it: units in words, counts a day, shares with or
without a space; every file-system mistake a clear error on stderr naming the file (no
traceback); a template of every default that loads as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from twin.scenario.schema import Scenario, ScenarioError, load_scenario
from twin.scenario.units import UnitError, fraction, minutes, per_day

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "scenarios" / "small_clinic.yaml"


@pytest.mark.parametrize("text,value", [
    ("10 min", 10), ("30 minutes", 30), ("1 minute", 1), ("2 mins", 2), ("1.5 h", 90),
    ("2 hours", 120), ("1 hour", 60), ("1 hr", 60), ("45 s", 0.75), ("30 seconds", 0.5),
    ("90 sec", 1.5), ("10min", 10), ("10 MIN", 10),
])
def test_durations_in_the_units_people_write(text: str, value: float) -> None:
    assert minutes(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["10", "10 furlongs", "ten min", "", "10 min extra",
                                  "1e400 min"])
def test_durations_without_a_known_unit_are_refused(text: str) -> None:
    with pytest.raises(UnitError):
        minutes(text)


def test_shares_and_counts_a_day() -> None:
    assert fraction("30 %") == fraction("30%") == pytest.approx(0.3)
    assert fraction(0.3) == 0.3
    assert per_day(12000) == per_day("12000 /day") == per_day("12000 / day") == 12000
    assert per_day("12000 per day") == 12000
    for bad in ("12000 /h", "12000.5 /day", "many", True):
        with pytest.raises(UnitError):
            per_day(bad)


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("key", "value"), [
    ("seed", ".inf"), ("replications", ".nan"),
    ("times", '{registration_kiosk: {dist: lognormal, median: "1.6 min", sigma: .inf}}'),
    ("times", '{lab_turnaround: {dist: gamma, mean: "50 min", cv: .nan}}')])
def test_a_number_with_no_end_is_refused(tmp_path: Path, key: str, value: str) -> None:
    """A kiosk whose service spreads without end was simulated until the day's guard
    blamed its capacity; now the file's key is named."""
    path = tmp_path / "x.yaml"
    path.write_text(f"extends: {SMALL}\n{key}: {value}\n")
    with pytest.raises(ScenarioError, match=f"{key}[.a-z_]*: Input should be a finite"):
        load_scenario(path)


def test_a_scenario_in_words_loads(tmp_path: Path) -> None:
    sc = load_scenario(_write(tmp_path, f"extends: {SMALL}\ndemand: {{daily_visits: "
                                        "'300 /day', adoption: 50%}\n"
                                        "online: {slot_length: 30 minutes}\n"))
    assert sc.demand.daily_visits == 300 and sc.demand.adoption == 0.5
    assert sc.online.slot_length == 30


def test_file_system_mistakes_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="a folder, not a scenario file"):
        load_scenario(tmp_path)
    child = _write(tmp_path, "extends: missing.yaml\n", "child.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenario(child)
    assert "child.yaml: extends: no such scenario file 'missing.yaml'" in str(info.value)
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ScenarioError, match=r"b\.yaml"):
        load_scenario(binary)


@pytest.mark.parametrize("target", ["folder", "missing_parent", "missing"])
def test_the_cli_says_so_on_stderr_without_a_traceback(tmp_path: Path, target: str) -> None:
    path = {"folder": tmp_path,
            "missing_parent": _write(tmp_path, "extends: nowhere.yaml\n"),
            "missing": tmp_path / "none.yaml"}[target]
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "run", str(path), "-r", "2",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout
    assert "scenario error" in res.stderr and str(path.name) in res.stderr
    assert "scenario error" not in res.stdout


def test_params_yaml_is_a_template_that_loads_as_written(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "params", "--yaml"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    path = _write(tmp_path, res.stdout, "template.yaml")
    assert load_scenario(path).model_dump() == Scenario(name="my_hospital").model_dump()
    assert "10 min" in res.stdout and "%" in res.stdout  # units, as a planner writes them


def test_sweep_takes_shares_in_percent(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "sweep", str(SMALL),
                          "--adoption", "0%,100%", "-r", "2", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    import pandas as pd

    assert sorted(pd.read_csv(tmp_path / "sweep.csv").adoption) == [0.0, 1.0]
    bad = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "sweep", str(SMALL),
                          "--adoption", "0,half"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--adoption" in bad.stderr


def test_a_run_never_leaves_an_earlier_runs_files_beside_its_own(tmp_path: Path) -> None:
    """--out with an earlier run's files is refused (exit 2, nothing written) unless
    --force, which clears it: an outage run's plots do not survive a later plain run."""
    outage = ROOT / "scenarios" / "small_clinic_outage.yaml"
    out = tmp_path / "out"

    def run(scenario: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "twin.cli", "twin", "run", str(scenario),
                               "-r", "2", "--out", str(out), *extra], capture_output=True,
                              text=True, timeout=300)

    assert run(outage).returncode == 0 and (out / "outage.png").exists()
    again = run(SMALL)
    assert again.returncode == 2 and "--force" in again.stderr
    assert (out / "outage.png").exists()  # untouched
    assert run(SMALL, "--force").returncode == 0
    assert not (out / "outage.png").exists() and (out / "kpis.csv").exists()
    (tmp_path / "file").write_text("x")
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "sweep", str(SMALL),
                          "--out", str(tmp_path / "file")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2 and "is a file" in res.stderr
