"""The hourly profile estimated from records stamped over a real day (a co-simulated
day runs in seconds and carries none): a store written with a known profile gives it back."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.experiments.from_records import estimate, scenario_file
from twin.scenario.schema import load_scenario


def test_a_known_hourly_profile_is_recovered(tmp_path: Path) -> None:
    sc = load_scenario(Path("scenarios/small_clinic.yaml"))
    rng = np.random.default_rng(3)
    counts = {8: 120, 9: 160, 10: 80, 14: 40}  # first scans of the day per clock hour
    rows, n = [], 0
    for hour, k in counts.items():
        for _ in range(k):
            t0 = datetime(2026, 11, 2, hour) + timedelta(minutes=float(rng.uniform(0, 59)))
            for step, dt in ((10101, 0), (10102, 20), (10103, 50)):  # later scans that day
                n += 1
                rows.append({"id": n, "card_id": f"{n:064X}", "step": step, "code_kind": "fused",
                             "verified_at": (t0 + timedelta(minutes=dt)).isoformat()})
    df = pd.DataFrame(rows)
    df["card_id"] = df.groupby(df.index // 3).card_id.transform("first")
    folder = tmp_path / "store" / "ehc.usage" / "day=2026-11-02"
    folder.mkdir(parents=True)
    df.to_parquet(folder / "a.parquet", index=False)
    found = {e.key: e for e in estimate(tmp_path / "store", sc, visits=400, code_share=0.0)}
    mean = np.mean([counts.get(h, 0) for h in sorted(set(counts) | set(sc.day.hourly_profile))])
    for hour in sc.day.hourly_profile:
        assert found[f"day.hourly_profile.{hour}"].value == pytest.approx(
            counts.get(hour, 0) / mean, abs=1e-3)
    assert found["demand.prescription_share"].value == 1.0
    assert found["demand.test_share"].value == 0.0
    path = scenario_file(list(found.values()), Path("scenarios/small_clinic.yaml"),
                         tmp_path / "store", tmp_path / "fitted.yaml")
    fitted = load_scenario(path)
    assert fitted.day.hourly_profile[11] == 0 and fitted.day.hourly_profile[9] > 1
