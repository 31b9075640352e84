"""The hospital twin: deterministic totals, extremes, seeds, CRN, arrivals, calibration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import simpy

from twin.experiments.runner import run_replications
from twin.model.arrivals import nspp_arrivals, rate_function
from twin.model.day import HospitalDay
from twin.model.engine import DayEnvironment, Visit
from twin.results.kpis import kpis, patients_frame, queue_frame
from twin.scenario.schema import Scenario, ScenarioError, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
BIG = 10_000

FIXED = {
    "registration_window": 2, "registration_kiosk": 2, "payment_window": 1.5,
    "consult_first": 10, "consult_revisit": 4, "lab_service": 3, "lab_turnaround": 40,
    "imaging_service": 3, "imaging_turnaround": 40, "report_print": 1,
    "pharmacy_dispense": 2, "walk": 2.5, "checkin_scan": 0.25, "phone_payment": 0.5,
}


def deterministic(adoption: float, visits: int = 300) -> Scenario:
    return Scenario.model_validate({
        "name": "deterministic",
        "demand": {"daily_visits": visits, "adoption": adoption},
        "resources": {k: BIG for k in ("registration_windows", "kiosks", "payment_windows",
                                       "pharmacy_windows", "lab_stations", "imaging_rooms",
                                       "checkin_scanners")},
        "hospital": {"departments": [{"name": "all", "share": 1, "doctors": BIG}]},
        "times": {k: {"dist": "fixed", "value": f"{v} min"} for k, v in FIXED.items()},
        "online": {"early": {"dist": "fixed", "value": "0 min"}, "late_share": 0,
                   "call_delay": {"dist": "fixed", "value": "0 min"},
                   "no_show_share": 0, "phone_payment_failure": 0,
                   "prepaid_dispense_factor": 0.5, "elderly_walk_factor": 1.0},
    })


def test_deterministic_traditional_visit_times_are_hand_computed() -> None:
    day = HospitalDay(deterministic(0.0), 0).run()
    df = patients_frame(day)
    f = FIXED
    for _, r in df.iterrows():
        walks = 2 + 4 * r.tests + 2 * r.prescription
        expect = (walks * f["walk"] + f["registration_window"] + f["consult_first"]
                  + r.tests * (f["payment_window"] + f["lab_service"] + f["lab_turnaround"]
                               + f["report_print"] + f["consult_revisit"])
                  + r.prescription * (f["payment_window"] + f["pharmacy_dispense"]))
        assert r.visit_time == pytest.approx(expect, abs=1e-9)
        assert r.walks == walks
        assert r.wait_registration == r.wait_payment == r.wait_pharmacy == 0
    assert len(df) == day.p.n > 200


def test_deterministic_online_visit_times_are_hand_computed() -> None:
    day = HospitalDay(deterministic(1.0), 0).run()
    df = patients_frame(day)
    f = FIXED
    for _, r in df.iterrows():
        walks = 1 + 2 * r.tests + r.prescription
        expect = (walks * f["walk"] + f["checkin_scan"] + f["consult_first"]
                  + r.tests * (f["phone_payment"] + f["lab_service"] + f["lab_turnaround"]
                               + f["consult_revisit"])
                  + r.prescription * (f["phone_payment"] + 0.5 * f["pharmacy_dispense"]))
        # arrival is at the slot start (early = 0): the walk and scan make the patient
        # late for the slot, so no extra slot wait is added
        assert r.visit_time == pytest.approx(expect, abs=1e-9)
        assert r.walks == walks


def test_no_arrivals_is_an_empty_day() -> None:
    sc = Scenario.model_validate({"name": "empty", "demand": {"daily_visits": 0}})
    day = HospitalDay(sc, 0).run()
    assert day.p.n == 0 and patients_frame(day).empty
    k = kpis(day)
    assert k["patients"] == 0 and np.isnan(k["visit_time"])


def test_infinite_capacity_means_no_waiting() -> None:
    sc = deterministic(0.5, visits=2000)
    sc = sc.model_copy(update={"times": Scenario(name="x").times})  # random times again
    day = HospitalDay(sc, 0).run()
    assert all(st.wait_sum == 0 for st in day.stations.values())


def test_overload_queues_grow_and_utilisation_stays_below_one() -> None:
    sc = Scenario.model_validate({"name": "overload", "demand": {"daily_visits": 3000},
                                  "day": {"max_overtime_h": 96},
                                  "resources": {"registration_windows": 1, "kiosks": 0}})
    day = HospitalDay(sc, 0).run()
    reg = day.stations["registration window"]
    q = np.asarray(reg.queue_samples)
    assert day.sample_every is not None
    times = day.monitor_start + day.sample_every * np.arange(len(q))
    at = lambda h: q[np.searchsorted(times, h * 60)]  # noqa: E731
    assert at(9) < at(11) < at(14)  # the queue only grows while arrivals continue
    span = day.end - sc.day.arrivals_from
    assert 0.9 < reg.busy / (reg.capacity * span) <= 1.0 + 1e-9


def test_same_seed_same_results_other_seed_other_results() -> None:
    sc = load_scenario(SCENARIOS / "small_clinic.yaml")
    a = run_replications(sc, 2, keep_patients=False).kpis
    b = run_replications(sc, 2, keep_patients=False).kpis
    c = run_replications(sc, 2, seed=sc.seed + 1, keep_patients=False).kpis
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)


def test_sequential_equals_parallel() -> None:
    sc = load_scenario(SCENARIOS / "small_clinic.yaml")
    seq = run_replications(sc, 4, workers=1)
    par = run_replications(sc, 4, workers=2)
    pd.testing.assert_frame_equal(seq.kpis, par.kpis)
    pd.testing.assert_frame_equal(seq.patients, par.patients)


def test_common_random_numbers_between_flows() -> None:
    sc = load_scenario(SCENARIOS / "tertiary_baseline.yaml").model_copy(
        update={"demand": Scenario(name="x").demand.model_copy(update={"daily_visits": 2000})})
    trad = HospitalDay(sc.with_adoption(0.0), 3)
    onl = HospitalDay(sc.with_adoption(1.0), 3)
    np.testing.assert_array_equal(trad.p.arrival, onl.p.arrival)
    for name in ("consult1", "test", "rx", "dept", "pay", "walk", "dispense", "turnaround"):
        np.testing.assert_array_equal(getattr(trad.p, name), getattr(onl.p, name))
    assert not trad.p.online.any() and onl.p.online.all()


def test_nspp_arrival_totals_match_the_profile_integral() -> None:
    profile = {7: 0.9, 8: 1.7, 9: 1.8, 10: 1.5, 11: 1.0, 12: 0.4, 13: 0.8, 14: 0.9}
    start, end, daily = 450.0, 900.0, 5000.0
    rng = np.random.default_rng(1)
    counts = [len(nspp_arrivals(rng, profile, start, end, daily)) for _ in range(60)]
    assert np.mean(counts) == pytest.approx(daily, rel=0.02)
    # shape: the share per hour follows the profile
    times = np.concatenate([nspp_arrivals(rng, profile, start, end, daily) for _ in range(20)])
    rate, _, integral = rate_function(profile, start, end, daily)
    assert integral == daily
    nine = np.mean((times >= 540) & (times < 600))
    assert nine == pytest.approx(rate(np.array([570.0]))[0] * 60 / daily, rel=0.03)


@pytest.mark.slow
def test_calibration_targets_hold_in_their_bands() -> None:
    """The calibrated tertiary baseline (``ehc twin calibrate``) against DOMAIN.md s.5:
    average window wait 8.26 +- 1.5 min, a walk-in's doctor wait 18.5 +- 3 min, the
    consultation median 10 +- 1 min, each over replications; the "after" figures are
    reported beside, not fitted: here only their direction is held (the windows empty,
    precise slots cut the doctor wait, the pharmacy wait falls, time is saved)."""
    from twin.experiments.calibrate import validate

    checks = {c.key: c for c in validate(load_scenario(SCENARIOS / "tertiary_baseline.yaml"),
                                         replications=3, workers=2)}
    for key in ("before.window_wait", "before.wait_doctor", "before.consult_median"):
        assert checks[key].within, (key, checks[key])
    assert checks["after.window_wait"].mean < checks["before.window_wait"].mean
    assert checks["after.wait_doctor_online"].mean < checks["before.wait_doctor"].mean
    assert checks["after.pharmacy_change"].mean < 0
    assert checks["after.time_saved"].low > 0


def test_consultation_meets_the_measured_median_and_iqr() -> None:
    """Lancet 2018: median 10 min, IQR 5-12 (a lognormal cannot have both)."""
    sc = load_scenario(SCENARIOS / "tertiary_baseline.yaml")
    x = sc.times.consult_first.sample(np.random.default_rng(1), 200_000)
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    assert (q1, med, q3) == pytest.approx((5, 10, 12), abs=0.1)


@pytest.mark.slow
@pytest.mark.parametrize("adoption", ["tertiary_adoption_30.yaml", "tertiary_adoption_60.yaml"])
def test_card_users_are_not_slower_than_the_walk_ins_beside_them(adoption: str) -> None:
    """Precise slots (DOMAIN.md s.5: doctor wait 18.5 -> 10.1 min): at partial adoption a
    card user's visit is not longer than a walk-in's on the same day."""
    res = run_replications(load_scenario(SCENARIOS / adoption), 3, keep_patients=False,
                           workers=2)
    k = res.kpis
    assert (k.visit_time_online <= k.visit_time_traditional).all(), k[
        ["visit_time_online", "visit_time_traditional"]]
    assert (k.wait_doctor_online < 15).all()


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_scenario_loads_and_runs(path: Path) -> None:
    sc = load_scenario(path)
    small = sc.model_copy(update={"demand": sc.demand.model_copy(
        update={"daily_visits": min(sc.demand.daily_visits, 800)})})
    res = run_replications(small, 1, keep_patients=False)
    assert res.kpis.loc[0, "patients"] > 0


@pytest.mark.parametrize(("yaml_text", "expect"), [
    ("name: x\ndemand: {dialy_visits: 10}\n", "demand.dialy_visits: unknown key"),
    ("name: x\ndemand: {daily_visits: -5}\n", "demand.daily_visits"),
    ("name: x\ntimes: {walk: {dist: fixed, value: 3}}\n", "needs a unit"),
    ("name: x\ntimes: {walk: {dist: fixed, value: 3 parsecs}}\n", "unknown time unit"),
    ("name: x\nday: {arrivals_from: '25:00'}\n", "day.arrivals_from"),
    ("name: x\ndemand: {adoption: 130 %}\n", "demand.adoption"),
    ("name: x\nseed: -1\n", "seed: Input should be greater than or equal to 0"),
    ("- just\n- a list\n", "a scenario is a mapping"),
    ("name: x\nextends: nowhere.yaml\n", "no such scenario file"),
])
def test_scenario_errors_name_file_key_and_problem(tmp_path: Path, yaml_text: str,
                                                   expect: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    assert "bad.yaml" in str(info.value) or "nowhere.yaml" in str(info.value)
    assert expect in str(info.value)


def test_cli_reports_a_bad_scenario_without_traceback(tmp_path: Path) -> None:
    f = tmp_path / "typo.yaml"
    f.write_text("name: x\nresources: {kiosk: 3}\n")
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "run", str(f)],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "resources.kiosk: unknown key" in res.stderr  # errors on stderr
    assert "Traceback" not in res.stdout + res.stderr
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "run",
                          str(SCENARIOS / "small_clinic.yaml"), "--seed", "-5"],
                         capture_output=True, text=True)  # numpy's seeds are unsigned
    assert res.returncode == 2 and "--seed" in res.stderr, res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_cli_run_and_compare_write_results_and_plots(tmp_path: Path) -> None:
    sc = SCENARIOS / "small_clinic.yaml"
    run = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "run", str(sc), "-r", "2",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for name in ("kpis.csv", "summary.csv", "patients.parquet", "steps.parquet",
                 "stations.csv", "queues.csv", "waits.png", "visit_time_ecdf.png",
                 "queues.png", "scenario.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0, name
    summary = pd.read_csv(tmp_path / "run" / "summary.csv").set_index("kpi")
    assert {"mean", "ci_low", "ci_high", "unit"} <= set(summary.columns)
    steps = pd.read_parquet(tmp_path / "run" / "steps.parquet")
    assert {"patient", "step", "station", "wait", "service", "replication"} <= set(steps)
    cmp_ = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "compare",
                           str(SCENARIOS / "secondary_baseline.yaml"),
                           str(SCENARIOS / "secondary_adoption_100.yaml"), "-r", "2",
                           "--out", str(tmp_path / "cmp")], capture_output=True, text=True)
    assert cmp_.returncode == 0, cmp_.stderr
    diff = pd.read_csv(tmp_path / "cmp" / "paired_differences.csv").set_index("kpi")
    assert diff.loc["visit_time", "difference"] < 0  # online is faster
    assert (tmp_path / "cmp" / "waits.png").stat().st_size > 10_000


def test_calibrate_command_checks_and_writes_with_its_source(tmp_path: Path) -> None:
    """``ehc twin calibrate --check`` prints every target beside the model; the writer
    puts a fit into a scenario file with its source, and the file loads to that fit."""
    from twin.experiments.calibrate import Fit, staffed, write_fit

    run = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "calibrate",
                          str(SCENARIOS / "tertiary_baseline.yaml"), "--check", "-r", "2"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "8.26" in run.stdout and "18.5" in run.stdout and "fitted" in run.stdout
    target = tmp_path / "baseline.yaml"
    target.write_text((SCENARIOS / "tertiary_baseline.yaml").read_text())
    sc = load_scenario(target)
    fit = Fit(1.5, 0.5, staffed(sc, 1.5, 0.5))
    write_fit(target, fit, "2026-11-29")
    text = target.read_text()
    assert "# calibrated by `ehc twin calibrate` (2026-11-29)" in text
    assert text.count("# calibrated by") == 1  # a previous calibration is replaced
    again = load_scenario(target)
    assert again.resources.registration_windows == fit.scenario.resources.registration_windows
    assert [d.doctors for d in again.hospital.departments] == [
        d.doctors for d in fit.scenario.hospital.departments]


def test_a_day_without_queue_samples_is_the_same_day() -> None:
    sc = load_scenario(SCENARIOS / "small_clinic.yaml").with_adoption(0.5)
    sampled, bare = HospitalDay(sc, 0).run(), HospitalDay(sc, 0, sample_every=None).run()
    assert sampled.depart == bare.depart and sampled.w_doc == bare.w_doc
    assert all(st.queue_samples for st in sampled.stations.values())
    assert not any(st.queue_samples for st in bare.stations.values())
    with pytest.raises(ValueError, match="without sampling"):
        queue_frame(bare)


# the day's lean SimPy loop and process start behave as SimPy's own: the same events in
# the same order at the same times, a failure raised, a process waited on told
def _trace(env: simpy.Environment, start: type | None) -> list[tuple[float, str]]:
    """Three customers on one server, each arriving, waiting and leaving, traced."""
    log: list[tuple[float, str]] = []
    server = simpy.Resource(env, 1)

    def customer(name: str, service: float):
        log.append((env.now, f"{name} in"))
        with server.request() as req:
            yield req
            log.append((env.now, f"{name} served"))
            yield env.timeout(service)
        log.append((env.now, f"{name} out"))

    def source():
        for k, (gap, service) in enumerate([(0.0, 3.0), (1.0, 2.0), (0.5, 4.0)]):
            yield env.timeout(gap)
            gen = customer(f"c{k}", service)
            env.process(gen) if start is None else start(env, gen)

    env.process(source())
    return log


def test_lean_loop_and_start_give_simpys_own_trace() -> None:
    plain = simpy.Environment()
    expected = _trace(plain, None)
    plain.run()
    lean = DayEnvironment()
    got = _trace(lean, Visit)
    lean.run_until_triggered(lean.timeout(100.0))
    assert got == expected
    assert expected[-1] == (9.0, "c2 out")


def test_the_loop_stops_at_the_first_stop_processed() -> None:
    env = DayEnvironment()
    seen: list[float] = []

    def ticker():
        while True:
            seen.append(env.now)
            yield env.timeout(1.0)

    env.process(ticker())
    env.run_until_triggered(env.timeout(3.5), env.timeout(10.0))
    assert env.now == 3.5 and seen == [0.0, 1.0, 2.0, 3.0]


def test_a_failed_event_is_raised_and_a_waiting_process_is_told() -> None:
    env = DayEnvironment()

    def failing():
        yield env.timeout(1.0)
        raise ValueError("the patient fell")

    Visit(env, failing())
    with pytest.raises(ValueError, match="the patient fell"):
        env.run_until_triggered(env.timeout(5.0))

    env = DayEnvironment()
    done: list[object] = []

    def short():
        yield env.timeout(2.0)
        return "left"

    def waiter():
        done.append((yield Visit(env, short())))

    env.process(waiter())
    env.run_until_triggered(env.timeout(5.0))
    assert done == ["left"]
