"""Replications of a hospital day: seeds, a process pool, paired comparisons."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pandas as pd

from twin.experiments.paired import counterfactual_day
from twin.model.day import HospitalDay
from twin.results.kpis import (
    KPI_UNITS,
    kpis,
    patients_frame,
    queue_frame,
    stations_frame,
    steps_frame,
)
from twin.results.stats import kpi_interval, replications_needed, t_interval
from twin.scenario.schema import Scenario

SIGNED = ("time_saved",)  # KPIs that may be negative (a saving can be a loss)


def simulate_replication(sc: Scenario, replication: int, hospital: int = 0,
                         keep_patients: bool = True, counterfactual: bool = True
                         ) -> dict[str, Any]:
    """One replication; with ``counterfactual`` also the same day all-traditional (same
    seeds), so ``time_saved`` is a paired difference."""
    day = HospitalDay(sc, replication, hospital, keep_steps=keep_patients).run()
    k = kpis(day)
    base_kpis: dict[str, Any] | None = None
    if counterfactual:
        if sc.demand.adoption > 0:
            base = counterfactual_day(sc, replication, hospital, absent=day.absent)
            base_kpis = kpis(base)
            k["time_saved"] = base_kpis["visit_time"] - k["visit_time"]
        else:
            k["time_saved"] = 0.0
    out: dict[str, Any] = {"kpis": {"replication": replication, **k},
                           "stations": stations_frame(day).assign(replication=replication),
                           "queues": queue_frame(day).assign(replication=replication)}
    if keep_patients:
        out["patients"] = patients_frame(day).assign(replication=replication)
        out["steps"] = steps_frame(day).assign(replication=replication)
    if base_kpis is not None:  # the same people's day all-traditional
        out["counterfactual"] = {"replication": replication, **base_kpis, "time_saved": 0.0}
        out["counterfactual_queues"] = queue_frame(base).assign(replication=replication)
        if keep_patients:
            out["counterfactual_patients"] = patients_frame(base).assign(
                replication=replication)
    return out


def _task(args: tuple) -> dict[str, Any]:
    return simulate_replication(*args)


@dataclass
class RunResult:
    scenario: Scenario
    kpis: pd.DataFrame
    stations: pd.DataFrame
    queues: pd.DataFrame
    patients: pd.DataFrame | None = None
    steps: pd.DataFrame | None = None
    # the same people's day all-traditional (KPIs and, when kept, patients): what
    # time_saved is measured against
    counterfactual_kpis: pd.DataFrame | None = None
    counterfactual_queues: pd.DataFrame | None = None
    counterfactual_patients: pd.DataFrame | None = None

    def counterfactual(self) -> RunResult:
        """The all-traditional day of the same people as a result of its own."""
        if self.counterfactual_kpis is None:
            raise ValueError("no counterfactual: adoption is 0 or it was not asked for")
        queues = self.counterfactual_queues
        return RunResult(self.scenario.with_adoption(0.0), self.counterfactual_kpis,
                         pd.DataFrame(), pd.DataFrame() if queues is None else queues,
                         self.counterfactual_patients)

    def summary(self, level: float = 0.95) -> pd.DataFrame:
        rows = []
        for col in self.kpis.columns:
            if col == "replication":
                continue
            values = self.kpis[col].to_numpy(dtype=float)
            share = KPI_UNITS.get(col) == "share"  # at most 1
            mean, lo, hi, method = kpi_interval(values, level, 1.0 if share else None) \
                if col not in SIGNED else (*t_interval(values, level), "t")
            rows.append({"kpi": col, "mean": mean, "ci_low": lo, "ci_high": hi,
                         "unit": KPI_UNITS.get(col, ""), "interval": method})
        return pd.DataFrame(rows)

    def replications_needed(self, kpi: str = "visit_time", rel_precision: float = 0.05) -> int:
        return replications_needed(self.kpis[kpi].to_numpy(dtype=float), rel_precision)


def run_replications(sc: Scenario, replications: int | None = None, *, seed: int | None = None,
                     workers: int = 1, keep_patients: bool = True, counterfactual: bool = True,
                     progress: Callable[[int], None] | None = None) -> RunResult:
    """Run R replications (replication numbers 0..R-1) on ``workers`` processes; the
    result does not depend on ``workers``."""
    if seed is not None:
        sc = sc.model_copy(update={"seed": seed})
    reps = replications or sc.replications
    tasks = [(sc, r, 0, keep_patients, counterfactual) for r in range(reps)]
    outs: list[dict[str, Any]] = []
    if workers <= 1:
        for t in tasks:
            outs.append(_task(t))
            if progress:
                progress(1)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for out in pool.map(_task, tasks):
                outs.append(out)
                if progress:
                    progress(1)
    frames = {name: pd.concat([o[name] for o in outs], ignore_index=True)
              for name in ("stations", "queues", "patients", "steps") if name in outs[0]}
    cf = [o["counterfactual"] for o in outs if "counterfactual" in o]
    cf_frames = {name: pd.concat([o[name] for o in outs], ignore_index=True)
                 for name in ("counterfactual_queues", "counterfactual_patients")
                 if name in outs[0]}
    return RunResult(sc, pd.DataFrame([o["kpis"] for o in outs]), frames["stations"],
                     frames["queues"], frames.get("patients"), frames.get("steps"),
                     pd.DataFrame(cf) if cf else None, cf_frames.get("counterfactual_queues"),
                     cf_frames.get("counterfactual_patients"))


def same_people(a: Scenario, b: Scenario) -> bool:
    """Whether two scenarios, on the same seed, see the same people: the same arrivals
    (the day's profile and hours, the visits a day) and the same departments' shares.
    Only then do common random numbers pair like with like; two different hospitals'
    differences are still per seed, and their interval still holds, but the pairing buys
    no precision there."""
    return (a.day == b.day and a.demand.daily_visits == b.demand.daily_visits
            and [d.share for d in a.hospital.departments]
            == [d.share for d in b.hospital.departments])


def paired_differences(a: RunResult, b: RunResult, level: float = 0.95) -> pd.DataFrame:
    """B minus A per KPI, paired by replication (common random numbers)."""
    merged = a.kpis.merge(b.kpis, on="replication", suffixes=("_a", "_b"))
    rows = []
    for col in a.kpis.columns:
        if col == "replication" or f"{col}_b" not in merged:
            continue
        d = merged[f"{col}_b"].to_numpy(dtype=float) - merged[f"{col}_a"].to_numpy(dtype=float)
        mean, lo, hi = t_interval(d, level)
        rows.append({"kpi": col, "a": t_interval(merged[f"{col}_a"].to_numpy(float))[0],
                     "b": t_interval(merged[f"{col}_b"].to_numpy(float))[0],
                     "difference": mean,
                     "ci_low": lo, "ci_high": hi, "unit": KPI_UNITS.get(col, "")})
    return pd.DataFrame(rows)
