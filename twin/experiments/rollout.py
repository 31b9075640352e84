"""The roll-out path: the province month by month (the hospitals live and the adoption
the fused cards allow in each month), each month against the same patients' day
all-traditional, and the curves planners report.

What does not change between months is run once: a chunk of hospitals at the same
adoption (those not yet live, at none) gives the same rows and the same demand in every
month it appears in, so the whole path is one pool of distinct chunks, largest first,
each result added to every month that uses it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from twin.experiments.demand import DAY_S, KINDS, Demand
from twin.experiments.province import ProvinceResult, Task, city_table, execute, plan
from twin.scenario.province import Province

Key = tuple[str, str, tuple[int, ...], int, float]


def _key(task: Task) -> Key:
    return (task.city, task.archetype, task.hospitals, task.replication, task.adoption)


@dataclass
class RolloutPlan:
    """The distinct chunks of a path (largest first) and, for each, where its result
    goes: (month, place in that month's task list)."""

    months: list[int]
    tasks: list[Task] = field(default_factory=list)
    uses: list[list[tuple[int, int]]] = field(default_factory=list)

    @property
    def chunks_without_reuse(self) -> int:
        return sum(len(u) for u in self.uses)


def plan_rollout(prov: Province, base_dir: Path, months: list[int], replications: int,
                 seed: int | None = None) -> RolloutPlan:
    index: dict[Key, int] = {}
    out = RolloutPlan(months)
    for month in months:
        for place, task in enumerate(plan(prov, base_dir, month, replications, seed)):
            i = index.setdefault(_key(task), len(out.tasks))
            if i == len(out.tasks):
                out.tasks.append(task)
                out.uses.append([])
            out.uses[i].append((month, place))
    size = [prov.archetypes[t.archetype].daily_visits * len(t.hospitals) for t in out.tasks]
    order = sorted(range(len(out.tasks)), key=lambda i: -size[i])
    out.tasks = [out.tasks[i] for i in order]
    out.uses = [out.uses[i] for i in order]
    return out


def run_rollout(prov: Province, base_dir: Path, months: list[int], *, workers: int = 1,
                scheduler: str | None = None, seed: int | None = None,
                replications: int | None = None,
                progress: Callable[[int], None] | None = None,
                path: RolloutPlan | None = None) -> pd.DataFrame:
    """One row per month: the province's adoption, minutes saved per visit with its 95 %
    interval, days saved a year, kiosks and windows needed under both flows, and the
    card network's busiest second. Each month is exactly what ``twin province --month``
    gives with the same seeds (``progress`` counts the distinct chunks of ``path``)."""
    reps = replications or prov.replications
    path = path or plan_rollout(prov, base_dir, months, reps, seed)
    placed: dict[int, list[tuple[int, list]]] = {m: [] for m in months}
    per_second = {m: np.zeros((len(KINDS), DAY_S), np.int32) for m in months}
    results = execute(path.tasks, workers, scheduler, progress)
    for uses, (rows, by_city, _) in zip(path.uses, results, strict=True):
        for month, place in uses:
            placed[month].append((place, rows))
            for d in by_city.values():  # added in place: a path adds thousands of chunks
                per_second[month][:, d.start:d.start + d.counts.shape[1]] += d.counts
    out = []
    for month in months:
        rows = [r for _, chunk in sorted(placed[month], key=lambda p: p[0]) for r in chunk]
        demand = {prov.name: Demand(0, per_second[month])}
        res = ProvinceResult(prov, month, pd.DataFrame(rows), demand)
        out.append(month_row(res))
    return pd.DataFrame(out)


def month_row(res: ProvinceResult) -> dict:
    """A month of the path from that month's province run."""
    total = city_table(res).iloc[-1]  # the province's row
    peaks = res.demand_total.peaks()
    return {"month": res.month, "adoption": total.adoption,
            "minutes_saved_per_visit": total.minutes_saved_per_visit,
            "ci_low": total.ci_low, "ci_high": total.ci_high,
            "days_saved_per_year": total.days_saved_per_year,
            "kiosks_needed_traditional": total.kiosks_needed_traditional,
            "kiosks_needed_scenario": total.kiosks_needed_scenario,
            "windows_needed_traditional": total.windows_needed_traditional,
            "windows_needed_scenario": total.windows_needed_scenario,
            "verify_peak_per_s": peaks["verify"]["peak_per_s"],
            "calls_peak_per_s": peaks["total"]["peak_per_s"]}
