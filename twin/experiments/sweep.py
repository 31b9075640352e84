"""A roll-out sweep: adoption levels x kiosk counts, each paired with its all-traditional
day (common random numbers)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from twin.experiments.runner import run_replications
from twin.results.kpis import WINDOWS
from twin.results.stats import t_interval
from twin.scenario.schema import Scenario

SWEPT_WAITS = ("visit_time", "wait_registration", "wait_payment", "wait_pharmacy",
               "wait_doctor")


def run_sweep(sc: Scenario, levels: list[float], kiosk_counts: list[int], replications: int,
              *, seed: int | None = None, workers: int = 1,
              progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """One row per (kiosks, adoption): time saved with its 95% CI, mean waits and the mean
    queue at the windows."""
    rows = []
    for k in kiosk_counts:
        for a in levels:
            variant = sc.with_adoption(a).model_copy(update={
                "resources": sc.resources.model_copy(update={"kiosks": k})})
            res = run_replications(variant, replications, seed=seed, workers=workers,
                                   keep_patients=False, progress=progress)
            saved = t_interval(res.kpis.time_saved.to_numpy(float))
            row = {"kiosks": k, "adoption": a, "time_saved": saved[0],
                   "time_saved_low": saved[1], "time_saved_high": saved[2]}
            for col in SWEPT_WAITS:
                row[col] = float(res.kpis[col].mean())
            row["mean_queue_windows"] = float(
                res.stations[res.stations.station.isin(WINDOWS)].mean_queue.mean())
            rows.append(row)
    return pd.DataFrame(rows)
