"""A hospital day's bounds: closing time and overtime, a day that never ends refused with
the station named, capacity 0 routed around or refused with the key named, and opening
at midnight."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from twin.experiments.runner import simulate_replication
from twin.model.day import HospitalDay, RunawayDay
from twin.results.kpis import kpis
from twin.scenario.schema import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "scenarios" / "small_clinic.yaml"


def scenario(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(f"extends: {SMALL}\nname: bounds\n{text}")
    return path


def test_overtime_and_last_departure_are_reported(tmp_path: Path) -> None:
    sc = load_scenario(scenario(tmp_path, 'day: {closing: "16:30"}\n'))
    k = kpis(HospitalDay(sc, 0).run())
    assert k["last_departure"] > sc.day.closing
    assert k["overtime_patients"] > 0
    late = load_scenario(scenario(tmp_path, 'day: {closing: "23:00"}\n'))
    assert kpis(HospitalDay(late, 0).run())["overtime_patients"] == 0


def test_closing_before_the_last_arrival_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="closing"):
        load_scenario(scenario(tmp_path, 'day: {arrivals_until: "16:30", closing: "15:00"}\n'))


def test_a_day_that_never_ends_is_refused_naming_the_station(tmp_path: Path) -> None:
    text = ("resources: {pharmacy_windows: 1}\n"
            'times: {pharmacy_dispense: {dist: fixed, value: "10 min"}}\n')
    sc = load_scenario(scenario(tmp_path, text))
    with pytest.raises(RunawayDay, match="pharmacy window"):
        HospitalDay(sc, 0).run()
    run = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "run",
                          str(scenario(tmp_path, text)),
                          "-r", "1", "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 2 and "pharmacy window" in run.stderr
    assert "Traceback" not in run.stderr


def test_no_kiosks_means_nobody_uses_one(tmp_path: Path) -> None:
    sc = load_scenario(scenario(tmp_path, "resources: {kiosks: 0}\n"))
    k = simulate_replication(sc, 0)["kpis"]
    assert k["kiosk_uses"] == 0 and k["patients"] > 0


@pytest.mark.parametrize("key", ["registration_windows", "payment_windows",
                                 "pharmacy_windows", "lab_stations", "imaging_rooms",
                                 "checkin_scanners"])
def test_zero_of_a_station_that_cannot_be_routed_around_is_refused(tmp_path: Path,
                                                                    key: str) -> None:
    with pytest.raises(ScenarioError, match=key):
        load_scenario(scenario(tmp_path, f"resources: {{{key}: 0}}\n"))


def test_a_day_may_open_at_midnight(tmp_path: Path) -> None:
    sc = load_scenario(scenario(tmp_path, 'day: {arrivals_from: "00:00", arrivals_until: '
                                '"06:00", closing: "08:00", hourly_profile: {0: 1, 1: 1, '
                                "2: 1, 3: 1, 4: 1, 5: 1}}\n"))
    k = simulate_replication(sc, 0)["kpis"]
    assert k["patients"] > 0 and k["last_departure"] > 0
