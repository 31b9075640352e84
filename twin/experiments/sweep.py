"""What-if sweeps: any scenario keys over their values (a grid, or a Latin hypercube over
ranges), every combination on the same simulated patients (common random numbers) and
paired with its all-traditional day. The roll-out sweep (adoption x kiosks) is one of
them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pandas as pd

from twin.experiments.runner import run_replications
from twin.experiments.sensitivity import apply
from twin.results.kpis import WINDOWS
from twin.results.stats import kpi_interval, t_interval
from twin.scenario.schema import Scenario

SWEPT_WAITS = ("visit_time", "wait_registration", "wait_payment", "wait_pharmacy",
               "wait_doctor")
GRID_KPIS = ("time_saved", *SWEPT_WAITS, "window_staff_hours")


def combinations(settings: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the keys' values (a full grid), in the order given."""
    keys = list(settings)
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(settings[k] for k in keys))]


def run_grid(sc: Scenario, settings: dict[str, list[Any]], replications: int, *,
             seed: int | None = None, workers: int = 1,
             progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """One row per combination: the values set, each KPI's mean and 95 % interval (the
    saving paired with the same patients' traditional day), the mean window queue."""
    rows = []
    for values in combinations(settings):
        res = run_replications(apply(sc, values), replications, seed=seed, workers=workers,
                               keep_patients=False, progress=progress)
        row: dict[str, Any] = dict(values)
        for kpi in GRID_KPIS:
            x = res.kpis[kpi].to_numpy(float)
            mean, low, high = t_interval(x) if kpi == "time_saved" else kpi_interval(x)[:3]
            row.update({kpi: mean, f"{kpi}_low": low, f"{kpi}_high": high})
        row["mean_queue_windows"] = float(
            res.stations[res.stations.station.isin(WINDOWS)].mean_queue.mean())
        rows.append(row)
    return pd.DataFrame(rows)


def tidy(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The grid as one row per (combination, KPI): mean, low, high."""
    rows = []
    for _, r in df.iterrows():
        for kpi in GRID_KPIS:
            rows.append({**{k: r[k] for k in keys}, "kpi": kpi, "mean": r[kpi],
                         "ci_low": r[f"{kpi}_low"], "ci_high": r[f"{kpi}_high"]})
    return pd.DataFrame(rows)


def run_sweep(sc: Scenario, levels: list[float], kiosk_counts: list[int], replications: int,
              *, seed: int | None = None, workers: int = 1,
              progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """The roll-out sweep: one row per (kiosks, adoption), as ``run_grid`` gives it."""
    df = run_grid(sc, {"resources.kiosks": kiosk_counts, "demand.adoption": levels},
                  replications, seed=seed, workers=workers, progress=progress)
    return df.rename(columns={"resources.kiosks": "kiosks", "demand.adoption": "adoption"})
