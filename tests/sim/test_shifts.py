"""Opening hours inside the day: servers opened and closed by shift (a lunch break,
windows opened at the peak, doctors away at noon), on the model's own resource, with
the staffed hours, utilisation and staffing table following the shifts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simpy
import yaml

from twin.model.day import HospitalDay
from twin.model.resources import FastResource
from twin.results.kpis import kpis, stations_frame
from twin.scenario.schema import Scenario, ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "scenarios" / "small_clinic.yaml"


def _served(env: simpy.Environment, res: FastResource, log: list, pid: int, service: float):
    waiting = res.acquire()
    if waiting is not None:
        yield waiting
    log.append((pid, env.now))
    yield env.timeout(service)
    res.release()


def test_opened_servers_take_the_waiting_and_closed_ones_call_nobody() -> None:
    env = simpy.Environment()
    res = FastResource(env, 1)
    log: list = []
    for pid in range(4):
        env.process(_served(env, res, log, pid, 10.0))
    env.run(until=1)
    assert [p for p, _ in log] == [0] and len(res) == 3
    res.set_capacity(3)  # two windows open: two of the waiting are called at once
    env.run(until=2)
    assert [p for p, _ in log] == [0, 1, 2] and res.count == 3
    res.set_capacity(1)  # two close: they finish their patients and call no next one
    env.run(until=11.5)
    assert res.count == 1 and len(res) == 0 and log[-1] == (3, 11.0)
    env.run(until=25)
    assert res.count == 0  # everyone served, in order, nobody lost


def _shifted(tmp_path: Path, shifts: dict, parent: Path = SMALL) -> Scenario:
    """The parent scenario with these shifts, as a planner writes it (YAML, extends)."""
    path = tmp_path / "shifted.yaml"
    path.write_text(yaml.safe_dump({"extends": str(parent),
                                    "resources": {"shifts": shifts}}), encoding="utf-8")
    return load_scenario(path)


def test_a_lunch_break_holds_the_queue_and_the_staffed_hours_follow(tmp_path) -> None:
    plain = HospitalDay(load_scenario(SMALL), 0).run()
    windows = plain.sc.resources.registration_windows
    lunch = HospitalDay(_shifted(tmp_path, {"registration_windows": {
        "12:00": 0, "13:00": windows}}), 0).run()
    st, st0 = lunch.stations["registration window"], plain.stations["registration window"]
    assert st.uses == st0.uses  # the same people, all served
    day = lunch.sc.day
    assert st.staffed_minutes(day.arrivals_from, lunch.end) == pytest.approx(
        windows * (lunch.end - day.arrivals_from - 60))
    # nobody is called during the break: every use that waited into it ends after 13:00
    steps = lunch.steps
    called = np.array([q + w for _, step, name, q, w, _ in steps
                       if name == "registration window"])
    assert not np.any((called > 12 * 60 + 1e-9) & (called < 13 * 60 - 1e-9))
    assert kpis(lunch)["wait_registration"] > kpis(plain)["wait_registration"]
    frame = stations_frame(lunch).set_index("station")
    assert frame.loc["registration window", "staffed_hours"] == pytest.approx(
        st.staffed_minutes(day.arrivals_from, lunch.end) / 60)


def test_windows_opened_at_the_peak_shorten_its_waits(tmp_path) -> None:
    tertiary = ROOT / "scenarios" / "tertiary_baseline.yaml"
    base = load_scenario(tertiary)
    n = base.resources.registration_windows
    plain = HospitalDay(base, 0, keep_steps=False).run()
    peak = HospitalDay(_shifted(tmp_path, {"registration_windows": {
        "08:00": n + 8, "11:00": n}}, tertiary), 0, keep_steps=False).run()
    assert kpis(peak)["wait_registration"] < 0.8 * kpis(plain)["wait_registration"]
    assert kpis(peak)["window_staff_hours"] == pytest.approx(
        kpis(plain)["window_staff_hours"] + 8 * 3, rel=0.02)


def test_doctors_away_at_noon_as_a_share_of_each_department(tmp_path) -> None:
    day = HospitalDay(_shifted(tmp_path, {"doctors": {"12:00": "50 %", "13:30": "100 %"}}),
                      0)
    for st, dept in zip(day.doctors, day.sc.hospital.departments, strict=True):
        assert st.shifts == [(720.0, round(0.5 * dept.doctors)), (810.0, dept.doctors)]
    day.run()
    assert all(st.resource.capacity == st.capacity for st in day.doctors)


@pytest.mark.parametrize("shifts,named", [
    ({"registration_windows": {"12:00": -1}}, "shifts.registration_windows at 12:00"),
    ({"registration_windows": {"12:00": 2.5}}, "a whole number of servers"),
    ({"doctors": {"12:00": "150 %"}}, "a share of the doctors"),
    ({"cleaners": {"12:00": 3}}, "cleaners"),
    ({"kiosks": {"25:00": 3}}, "25:00"),
])
def test_bad_shifts_are_refused_naming_the_key(tmp_path, shifts: dict, named: str) -> None:
    with pytest.raises(ScenarioError) as info:
        _shifted(tmp_path, shifts)
    assert named in str(info.value) and "shifted.yaml" in str(info.value)


def test_named_doctors_queue_apart_and_lose_the_pooling(tmp_path) -> None:
    """A named-expert clinic: each patient queues for the doctor they chose. With the same
    doctors and patients, separate queues wait longer than one shared queue (c M/M/1
    queues against one M/M/c), every doctor sees patients, and a noon shift closes whole
    doctors rather than a share of one."""
    base = load_scenario(SMALL)
    deps = [{**d.model_dump(mode="json"), "named_doctors": True}
            for d in base.hospital.departments]
    path = tmp_path / "named.yaml"
    path.write_text(yaml.safe_dump({"extends": str(SMALL), "hospital": {"departments": deps}}),
                    encoding="utf-8")
    named = HospitalDay(load_scenario(path), 0).run()
    pooled = HospitalDay(base, 0).run()
    doctors = [st for st in named.doctors if st.name.startswith("doctors: general practice")]
    assert len(doctors) == base.hospital.departments[0].doctors
    assert all(st.uses > 0 and st.capacity == 1 for st in doctors)
    assert kpis(named)["patients"] == kpis(pooled)["patients"]
    assert kpis(named)["wait_doctor"] > kpis(pooled)["wait_doctor"]
    shifted = _shifted(tmp_path, {"doctors": {"12:00": "50 %"}}, path)
    day = HospitalDay(shifted, 0)
    opened = [st.shifts[0][1] for st in day.doctors
              if st.name.startswith("doctors: general practice")]
    assert sorted(set(opened)) == [0, 1] and sum(opened) == round(0.5 * len(opened))
