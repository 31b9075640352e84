"""The province: roll-up arithmetic, executors agree, demand curve, CLI, sweep."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.experiments.demand import KINDS, Demand
from twin.experiments.province import city_table, paper_table, plan, run_province
from twin.model.day import HospitalDay
from twin.scenario.province import load_province, scale_hospital
from twin.scenario.schema import ScenarioError, load_scenario

DATA = Path(__file__).resolve().parents[1] / "data"
SMALL = DATA / "small_province.yaml"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small():
    return load_province(SMALL)


def test_ramp_interpolates_and_scaling_keeps_the_design(small) -> None:
    alpha = small.cities[0]
    assert alpha.adoption(0) == 0.2 and alpha.adoption(12) == 1.0
    assert alpha.adoption(6) == pytest.approx(0.6) and alpha.adoption(40) == 1.0
    base = load_scenario(ROOT / "scenarios/tertiary_baseline.yaml")
    half = scale_hospital(base, 6000)
    assert half.demand.daily_visits == 6000
    assert half.resources.kiosks == math.ceil(base.resources.kiosks / 2)
    assert half.resources.registration_windows == math.ceil(
        base.resources.registration_windows / 2)
    assert sum(d.doctors for d in half.hospital.departments) == pytest.approx(
        sum(d.doctors for d in base.hospital.departments) / 2, abs=5)


@pytest.fixture(scope="module")
def result(small):
    return run_province(small, SMALL.parent, month=12, workers=1)


def test_roll_up_arithmetic(small, result) -> None:
    df = result.hospitals
    assert len(df) == 5 and set(df.city) == {"Alpha", "Beta"}
    cities = city_table(result)
    prov = cities.iloc[-1]
    assert prov.city.startswith("Zhejiang") or "province" in prov.city
    # per visit saving is total minutes saved over total visits, and days follow from it
    assert prov.minutes_saved_per_visit == pytest.approx(df.minutes_saved.sum() / df.visits.sum())
    assert prov.days_saved_per_year == pytest.approx(
        prov.minutes_saved_per_visit * prov.visits_per_day * small.days_per_year / 1440)
    assert prov.ci_low < prov.minutes_saved_per_visit < prov.ci_high
    assert prov.visits_per_day == cities.iloc[:-1].visits_per_day.sum()
    assert prov.ehc_cards_millions == pytest.approx(0.7)
    paper = paper_table(result, cities).set_index("figure")
    row = paper.loc["days saved per year (level-2+ hospitals)"]
    assert row.model == pytest.approx(prov.days_saved_per_year)
    assert row.difference == pytest.approx(row.model - 3.0e6)
    assert all(isinstance(w, str) and w for w in paper.why)


def test_demand_counts_every_scan_and_phone_payment(small) -> None:
    sc = small.hospital_scenarios(SMALL.parent)["clinic"].with_adoption(0.5)
    day = HospitalDay(sc, 0, 3, keep_steps=True, record_demand=True).run()
    d = Demand.of_day(day)
    totals = dict(zip(KINDS, d.counts.sum(axis=1), strict=True))
    online = day.p.online
    steps = pd.DataFrame(day.steps, columns=["pid", "step", "st", "t", "w", "s"])
    scanned = online[steps.pid] | day.p.shows_code[steps.pid]
    # a visit is a verification only where a code is scanned: online patients always,
    # traditional patients who show an EHC code; the others not
    # and each retail pharmacy purchase made with the fused code is a scan too
    shop = totals["retail"]
    assert totals["verify"] - shop == int(scanned.sum()) < len(day.steps)
    assert int((scanned & ~online[steps.pid]).sum()) > 0
    assert totals["refresh"] - shop == int(online[steps.pid].sum())
    assert day.demand is not None
    phone_calls = sum(1 for e in day.demand if e[1] == "phone")
    assert totals["payment"] - shop == phone_calls
    frame = d.frame()
    assert len(frame) == 86_400 and frame.total.sum() == sum(totals.values()) - shop


def test_retail_pharmacy_purchases_are_in_the_demand() -> None:
    """The adopters' share of ``demand.retail_purchases_per_visit`` purchases per visit,
    within the pharmacies' hours, each a refresh, a verify, a settlement and a payment;
    none without adopters; the registered assumption moves the curve and never the
    queues."""
    from twin.scenario.assumptions import ASSUMPTIONS, with_value

    assert "demand.retail_purchases_per_visit" in {a.key for a in ASSUMPTIONS}
    sc = load_scenario(ROOT / "scenarios/small_clinic.yaml").with_adoption(0.6)

    def retail(variant) -> tuple[pd.DataFrame, HospitalDay]:
        day = HospitalDay(variant, 0, keep_steps=False, record_demand=True).run()
        frame = Demand.of_day(day).frame()
        return frame[frame.retail > 0], day

    shops, day = retail(sc)
    expected = 0.5 * 0.6 * day.p.n  # the default rate, the adoption, the day's patients
    assert abs(shops.retail.sum() - expected) < 4 * math.sqrt(expected)
    assert shops.second.min() >= 8 * 3600 and shops.second.max() < 21 * 3600
    late = with_value(with_value(sc, "demand.retail_opens", "19:00"),
                      "demand.retail_purchases_per_visit", 1.5)
    moved, other = retail(late)
    assert moved.second.min() >= 19 * 3600
    assert moved.retail.sum() > 2 * shops.retail.sum()
    assert np.array_equal(np.asarray(other.w_doc), np.asarray(day.w_doc))
    none, _ = retail(sc.with_adoption(0.0))
    assert none.empty
    with pytest.raises(ValueError, match="retail_closes"):
        with_value(sc, "demand.retail_closes", "07:00")


def test_same_seeds_same_results_on_every_executor(small, result) -> None:
    from dask.distributed import LocalCluster

    pool = run_province(small, SMALL.parent, month=12, workers=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        dask = run_province(small, SMALL.parent, month=12, scheduler=cluster.scheduler_address)
    for other in (pool, dask):
        pd.testing.assert_frame_equal(result.hospitals, other.hospitals)
        assert set(other.demand) == set(result.demand)
        for city, d in result.demand.items():
            np.testing.assert_array_equal(d.frame().total, other.demand[city].frame().total)


def test_tasks_cover_every_hospital_once(small) -> None:
    tasks = plan(small, SMALL.parent, month=0, replications=2)
    numbers = [h for t in tasks if t.replication == 0 for h in t.hospitals]
    assert sorted(numbers) == list(range(5))
    assert {t.adoption for t in tasks if t.city == "Beta"} == {0.1}


def test_province_errors(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(SMALL.read_text().replace("hospitals: {county: 2}",
                                             "hospitals: {nowhere: 2}"))
    with pytest.raises(ScenarioError, match="unknown archetype"):
        load_province(bad)
    bad.write_text(SMALL.read_text().replace("area_code: \"330200\"", "area_kode: x"))
    with pytest.raises(ScenarioError, match="area_kode: unknown key"):
        load_province(bad)


def test_province_cli_writes_tables_demand_and_plots(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "province", str(SMALL),
                          "--month", "6", "--out", str(tmp_path), "--demand-scale", "10",
                          "--keep-patients"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    for name in ("hospitals.csv", "cities.csv", "paper_comparison.csv", "demand.csv",
                 "demand_by_city.csv", "demand_peaks.json", "savings_by_city.png",
                 "demand.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    demand = pd.read_csv(tmp_path / "demand.csv")
    assert list(demand.columns) == ["second", "clock", *KINDS, "total"]
    patients = pd.read_parquet(tmp_path / "patients.parquet")
    hospitals = pd.read_csv(tmp_path / "hospitals.csv")
    assert len(patients) == hospitals.patients_scenario.sum()
    assert {"city", "hospital", "flow", "visit_time"} <= set(patients.columns)
    peaks = json.loads((tmp_path / "demand_peaks.json").read_text())
    assert peaks["verify"]["per_day"] * 10 == pytest.approx(demand.verify.sum())
    assert peaks["verify"]["peak_per_s"] >= peaks["verify"]["p99_per_s"]


def test_sweep_cli(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "sweep",
                          str(ROOT / "scenarios/small_clinic.yaml"), "--adoption", "0,1",
                          "--kiosks", "1,3", "-r", "2", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    df = pd.read_csv(tmp_path / "sweep.csv")
    assert len(df) == 4 and set(df.kiosks) == {1, 3}
    assert (df[df.adoption == 0].time_saved == 0).all()
    assert (tmp_path / "sweep.png").stat().st_size > 10_000
    bad = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "sweep",
                          str(ROOT / "scenarios/small_clinic.yaml"), "--adoption", "0,2"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stdout + bad.stderr


def test_verifications_rise_with_adoption(small) -> None:
    """More card users, more scans: the demand curve no longer falls as adoption rises
    (it counted every traditional station visit as a scan)."""
    sc = small.hospital_scenarios(SMALL.parent)["clinic"]
    verifies = [int(Demand.of_day(HospitalDay(sc.with_adoption(a), 0, 3, keep_steps=False,
                                              record_demand=True).run()).counts[0].sum())
                for a in (0.2, 0.5, 0.9)]
    assert verifies[0] < verifies[1] < verifies[2], verifies


def test_adoption_is_bounded_by_fused_cards_and_hospitals_live(small, tmp_path) -> None:
    """A city whose fused cards cover few people, and whose hospitals go live over the
    roll-out: its live hospitals see at most the card holders' share of visits, the
    others none."""
    import yaml

    data = yaml.safe_load(SMALL.read_text(encoding="utf-8"))
    alpha = data["cities"][0]
    alpha["fused_cards_by_month"] = {0: 0.05, 12: 0.2}  # millions of 1.0 M people
    alpha["hospitals_live_by_month"] = {0: 0.0, 12: 1.0}
    data["card_visit_ratio"] = 2.0
    for archetype in data["archetypes"].values():
        archetype["scenario"] = str((SMALL.parent / archetype["scenario"]).resolve())
    path = tmp_path / "bounded.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    prov = load_province(path)
    city = prov.cities[0]
    assert city.card_bound(12, 2.0) == pytest.approx(0.4)  # 0.2 M of 1 M, twice the visits
    assert city.live_adoption(12, 2.0) == pytest.approx(0.4)  # asked 100 %: cards allow 40 %
    assert city.live_adoption(0, 2.0) == pytest.approx(0.1)  # asked 20 %: cards allow 10 %
    assert city.hospitals_live(6, 3) == 2 and city.hospitals_live(0, 3) == 0
    six = plan(prov, SMALL.parent, month=6, replications=1)
    alpha_tasks = [(t.archetype, t.hospitals, t.adoption) for t in six if t.city == "Alpha"]
    # month 6: half of the hospitals live (the clinics' first), at 25 % (cards: 0.125 x 2)
    assert alpha_tasks == [("clinic", (0,), pytest.approx(0.25)), ("clinic", (1,), 0.0),
                           ("county", (2,), 0.0)]
    # unbounded cities are as before
    assert [t.adoption for t in six if t.city == "Beta"] == [pytest.approx(0.5)]
    assert prov.cities[1].card_bound(6, 2.0) == 1.0
    # the province's month reports the effective adoption
    res = run_province(prov, SMALL.parent, month=6)
    table = city_table(res).set_index("city")
    assert table.loc["Alpha", "adoption"] < 0.25


def test_the_province_carries_the_assumptions_interval(small, tmp_path: Path) -> None:
    """--lhs N: the month again over N Latin-hypercube draws of every registered
    assumption (applied to every hospital alike); the samples differ, each is a whole
    province run, and the interval printed brackets their median."""
    from twin.experiments.province import assumption_samples, province_saving
    from twin.scenario.assumptions import ASSUMPTIONS

    df = assumption_samples(small, SMALL.parent, 6, 3)
    assert len(df) == 3 and {a.key for a in ASSUMPTIONS} <= set(df.columns)
    assert df.saved.nunique() == 3 and df.days_saved_per_year.notna().all()
    plain = run_province(small, SMALL.parent, month=6)
    per_visit, days = province_saving(plain)
    assert days == pytest.approx(per_visit * plain.hospitals.visits.sum() * 365 / 1440)
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "province", str(SMALL),
                          "--month", "6", "--out", str(tmp_path), "--lhs", "3"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "over the assumptions' ranges" in res.stdout
    assert len(pd.read_csv(tmp_path / "province_lhs.csv")) == 3


def test_the_rollout_path_is_the_province_month_by_month(small, tmp_path: Path) -> None:
    from twin.experiments.rollout import month_row, plan_rollout, run_rollout

    months = [0, 6, 12, 36]
    staged = small.model_copy(update={"cities": [  # hospitals go live over the year,
        c.model_copy(update={"hospitals_live_by_month": {0: 0.0, 12: 1.0},  # few book
                             "adoption_by_month": {0: 0.0, 12: 0.05}})
        for c in small.cities]})
    plan = plan_rollout(staged, SMALL.parent, months, small.replications)
    assert len(plan.tasks) < plan.chunks_without_reuse  # hospitals not yet live: run once
    told: list[int] = []
    path = run_rollout(staged, SMALL.parent, months, path=plan, workers=2, more=told.append)
    # months whose online no-shows are the same people share their all-traditional day
    assert 0 < plan.traditional_days_run < plan.traditional_days_needed and told[0] > 0
    assert list(path.month) == months and path.adoption.is_monotonic_increasing
    assert path.adoption.iloc[0] == 0 < path.adoption.iloc[1]
    for month in months:  # each month exactly the province's month, peaks included
        alone = month_row(run_province(staged, SMALL.parent, month=month))
        assert path.set_index("month").loc[month].to_dict() == \
            {k: v for k, v in alone.items() if k != "month"}
    month12 = city_table(run_province(small, SMALL.parent, month=12)).iloc[-1]
    assert month12.city == "small_province (province)"
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "rollout", str(SMALL),
                          "--months", "0,12", "--out", str(tmp_path)], capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert len(pd.read_csv(tmp_path / "rollout.csv")) == 2
    assert (tmp_path / "rollout.png").stat().st_size > 20_000
    bad = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "rollout", str(SMALL),
                          "--months", "0,x"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--months" in bad.stderr


def test_the_phone_at_the_hospital_is_in_the_demand() -> None:
    """Each online patient who came books once and reads a report when a test was
    ordered; they look at the queue every ``online.queue_poll_every`` of their wait for the
    doctor; those calls are the curve's ``kiosk`` and never counted as scans. Both
    registered assumptions (the poll and how long ahead a visit is booked) move the
    curve, never the queues."""
    from twin.experiments.demand import Demand
    from twin.model.day import HospitalDay
    from twin.scenario.assumptions import with_value

    sc = load_scenario(ROOT / "scenarios/small_clinic.yaml")
    day = HospitalDay(sc, 0, keep_steps=False, record_demand=True).run()
    came = day.p.online & ~day.absent
    assert day.demand is not None
    steps = [e[1] for e in day.demand]
    assert steps.count("kiosk_booking") == int(came.sum()) > 0
    assert steps.count("kiosk_report") == int((came & day.p.test).sum())
    polls = steps.count("kiosk_queue")
    every = sc.online.queue_poll_every
    assert 0 < polls <= sum(int(w // every) for w in np.asarray(day.w_doc)[came]) + 1
    peaks = Demand.of_day(day).peaks()
    assert peaks["kiosk"]["per_day"] == len(day.demand) - sum(
        1 for s in steps if not s.startswith("kiosk_"))
    without = HospitalDay(sc, 0, keep_steps=False, record_demand=False).run()
    assert without.demand is None  # and the queues are the same day either way
    assert np.array_equal(np.asarray(without.w_doc), np.asarray(day.w_doc))
    moved = with_value(with_value(sc, "online.booking_lead", "1 h"),
                       "online.queue_poll_every", "5 min")
    other = HospitalDay(moved, 0, keep_steps=False, record_demand=True).run()
    assert other.demand is not None
    assert np.array_equal(np.asarray(other.w_doc), np.asarray(day.w_doc))

    def booked(d: HospitalDay) -> np.ndarray:
        return np.sort([t for t, s, _ in d.demand or [] if s == "kiosk_booking"])
    assert np.allclose(booked(other), booked(day) - 60)  # an hour before, not a day
    assert 0 < sum(s == "kiosk_queue" for _, s, _ in other.demand) < polls
