"""Service levels, not only averages: wait percentiles per station and the share of uses
served within the scenario's target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.model.day import HospitalDay
from twin.results.kpis import kpis, service_level, stations_frame
from twin.scenario.schema import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def test_service_level_of_known_waits() -> None:
    waits = [0.0] * 50 + [5.0] * 30 + [20.0] * 20
    s = service_level(waits, 10.0)
    assert s["p50_wait"] == pytest.approx(2.5) and s["p90_wait"] == pytest.approx(20.0)
    assert s["within_target"] == pytest.approx(0.8)
    assert service_level([], 10.0)["within_target"] == 1.0


def test_station_levels_agree_with_the_recorded_waits() -> None:
    day = HospitalDay(load_scenario(ROOT / "scenarios" / "tertiary_baseline.yaml"), 0).run()
    frame = stations_frame(day).set_index("station")
    k = kpis(day)
    for key, name in (("wait_registration", "registration window"),
                      ("wait_pharmacy", "pharmacy window")):
        waits = np.asarray(day.stations[name].waits)
        assert len(waits) == day.stations[name].uses
        assert frame.loc[name, "mean_wait"] == pytest.approx(waits.mean())
        assert frame.loc[name, "p90_wait"] >= frame.loc[name, "p50_wait"]
        assert k[f"{key}_p90"] == pytest.approx(np.percentile(waits, 90))
        assert k[f"{key}_within_target"] == pytest.approx((waits <= 10).mean())
    # the busy baseline misses the 10-minute target for many at its windows
    assert k["wait_registration_within_target"] < 0.9
