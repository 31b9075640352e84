"""One population: both flows see the same people. Someone who books and never comes would
not have come either way, so the counterfactual day leaves out the same people, and every
saving is per shown visit, paired (issue: a twin planners can trust, point 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.experiments.paired import counterfactual_day
from twin.experiments.runner import simulate_replication
from twin.model.day import HospitalDay
from twin.results.kpis import kpis, patients_frame
from twin.scenario.schema import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def small(adoption: float, no_show: float = 0.2):
    sc = load_scenario(SCENARIOS / "small_clinic.yaml").with_adoption(adoption)
    return sc.model_copy(update={"online": sc.online.model_copy(
        update={"no_show_share": no_show})})


@pytest.mark.parametrize("adoption", [0.3, 0.6, 1.0])
def test_the_counterfactual_sees_exactly_the_shown_people(adoption: float) -> None:
    sc = small(adoption)
    day = HospitalDay(sc, 0).run()
    base = counterfactual_day(sc, 0, absent=day.absent)
    assert day.absent.sum() > 0  # the case is not empty
    assert (patients_frame(day).patient.to_numpy()
            == patients_frame(base).patient.to_numpy()).all()
    assert kpis(base)["patients"] == kpis(day)["patients"]
    assert kpis(base)["no_shows"] == kpis(day)["no_shows"] == int(day.absent.sum())


def test_time_saved_is_the_paired_mean_over_shown_visits() -> None:
    sc = small(0.6)
    out = simulate_replication(sc, 0)
    day = HospitalDay(sc, 0).run()
    base = counterfactual_day(sc, 0, absent=day.absent)
    a, b = patients_frame(day), patients_frame(base)
    per_patient = (b.visit_time.to_numpy() - a.visit_time.to_numpy()).mean()
    assert out["kpis"]["time_saved"] == pytest.approx(per_patient, rel=1e-12)


def test_no_shows_do_not_count_as_saved_time() -> None:
    """Were the no-shows' whole visits counted as saved, raising the no-show share would
    raise the saving; with one population it does not move it by more than noise."""
    few = simulate_replication(small(0.6, no_show=0.0), 0)["kpis"]["time_saved"]
    many = simulate_replication(small(0.6, no_show=0.3), 0)["kpis"]["time_saved"]
    mean_visit = simulate_replication(small(0.6, no_show=0.0), 0)["kpis"]["visit_time"]
    assert abs(many - few) < 0.15 * mean_visit


def test_deferral_and_consultation_kpis() -> None:
    sc = small(0.6)
    with_rows = simulate_replication(sc, 0, keep_patients=True)["kpis"]
    without = simulate_replication(sc, 0, keep_patients=False)["kpis"]
    assert with_rows["consult_median"] == without["consult_median"]
    assert with_rows["deferral_p90"] >= with_rows["deferral"]
    day = HospitalDay(sc, 0).run()
    online = patients_frame(day).query("flow == 'online'")
    # signed: a precise time inside the half hour may come before the walk-in time
    expected = day.booked[online.patient] - day.p.arrival[online.patient]
    assert np.allclose(online.deferral, expected) and np.isfinite(online.deferral).all()
    assert np.isnan(patients_frame(day).query("flow == 'traditional'").deferral).all()


def test_adoption_by_age_keeps_the_days_share() -> None:
    """The elderly take the online flow less, adults more; the day's share is the
    scenario's adoption."""
    sc = small(0.5, no_show=0.0)
    rates = sc.demand.adoption_of_ages()
    assert rates[2] < rates[0] < rates[1]
    shares = sc.demand.age_shares
    assert sum(shares[g] * r for g, r in zip(("child", "adult", "elderly"), rates,
                                             strict=True)) == pytest.approx(0.5)
    p = HospitalDay(sc, 0).p
    for age, rate in enumerate(rates):
        group = p.online[p.age == age]
        assert group.mean() == pytest.approx(rate, abs=4 / np.sqrt(len(group)))
    full = small(1.0).demand.adoption_of_ages()
    assert full == (1.0, 1.0, 1.0)
