"""The roll-out path: the province month by month (the hospitals live and the adoption
the fused cards allow in each month), each month against the same patients' day
all-traditional, and the curves planners report.

What does not change between months is run once:
- a chunk of hospitals at the same adoption (those not yet live, at none) gives the same
  days in every month it appears in: the path's online days are one pool of distinct
  chunks, largest first, each result added to every month that uses it;
- a live hospital's all-traditional day leaves out that month's online no-shows and no
  one else, so months whose no-shows are the same people (most early months, where few
  book; a hospital not yet live, whose day is that day with no one left out) share one:
  once the online days are known, the distinct all-traditional days are run, each once.
Each month is still exactly what ``twin province --month`` gives with the same seeds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.experiments.demand import DAY_S, KINDS, Demand
from twin.experiments.paired import counterfactual_day
from twin.experiments.province import (
    CHUNK,
    ProvinceResult,
    Task,
    city_table,
    day_figures,
    execute,
    hospital_row,
    online_day,
    plan,
)
from twin.scenario.province import Province
from twin.scenario.schema import Scenario

Key = tuple[str, str, tuple[int, ...], int, float]
# an all-traditional day: (archetype, hospital, replication, packed absent mask, patients)
DayKey = tuple[str, int, int, bytes, int]


def _key(task: Task) -> Key:
    return (task.city, task.archetype, task.hospitals, task.replication, task.adoption)


@dataclass
class RolloutPlan:
    """The distinct chunks of a path (largest first) and, for each, where its result
    goes: (month, place in that month's task list). Once run: how many all-traditional
    days the live hospitals' months needed, and how many distinct ones were run."""

    months: list[int]
    tasks: list[Task] = field(default_factory=list)
    uses: list[list[tuple[int, int]]] = field(default_factory=list)
    traditional_days_needed: int = 0
    traditional_days_run: int = 0

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


@dataclass(frozen=True)
class OnlineDay:
    """What a hospital's day at the chunk's adoption leaves for its row."""

    hospital: int
    figures: dict[str, Any]
    no_shows: int
    traditional: DayKey  # the all-traditional day it is compared with


def _day_key(task: Task, h: int, absent: np.ndarray) -> DayKey:
    return (task.archetype, h, task.replication, np.packbits(absent).tobytes(), len(absent))


def run_online(task: Task) -> tuple[list[OnlineDay], dict[str, Demand]]:
    """A chunk's days at its adoption: figures, the traditional day each needs, demand."""
    days, demand = [], Demand()
    for h in task.hospitals:
        day = online_day(task, h)
        days.append(OnlineDay(h, day_figures(day, task.scenario, task.target_utilisation),
                              int(np.count_nonzero(day.absent)),
                              _day_key(task, h, day.absent)))
        demand = demand + Demand.of_day(day)
    return days, {task.city: demand}


@dataclass(frozen=True)
class TraditionalDays:
    """All-traditional days of one archetype's hospitals, each without its absent."""

    scenario: Scenario
    target_utilisation: float
    days: tuple[DayKey, ...]


def run_traditional(job: TraditionalDays) -> list[dict[str, Any]]:
    out = []
    for _, h, rep, packed, n in job.days:
        absent = np.unpackbits(np.frombuffer(packed, np.uint8), count=n).astype(bool)
        day = counterfactual_day(job.scenario, rep, h, absent=absent, sample_every=None)
        out.append(day_figures(day, job.scenario, job.target_utilisation))
    return out


def _traditional_jobs(path: RolloutPlan, online: list[list[OnlineDay]],
                      known: dict[DayKey, dict[str, Any]]) -> list[TraditionalDays]:
    """The distinct all-traditional days the live chunks need and no day gave yet, in
    chunks of one archetype, largest first."""
    wanted: dict[DayKey, Task] = {}
    for task, days in zip(path.tasks, online, strict=True):
        for d in days:
            if d.traditional not in known:
                wanted.setdefault(d.traditional, task)
    by_archetype: dict[str, list[DayKey]] = {}
    for key in wanted:
        by_archetype.setdefault(key[0], []).append(key)
    jobs = []
    for keys in by_archetype.values():
        task = wanted[keys[0]]
        jobs += [TraditionalDays(task.scenario, task.target_utilisation,
                                 tuple(keys[i:i + CHUNK])) for i in range(0, len(keys), CHUNK)]
    return sorted(jobs, key=lambda j: -sum(k[4] for k in j.days))


def run_rollout(prov: Province, base_dir: Path, months: list[int], *, workers: int = 1,
                scheduler: str | None = None, seed: int | None = None,
                replications: int | None = None,
                progress: Callable[[int], None] | None = None,
                more: Callable[[int], None] | None = None,
                path: RolloutPlan | None = None) -> pd.DataFrame:
    """One row per month: the province's adoption, minutes saved per visit with its 95 %
    interval, days saved a year, kiosks and windows needed under both flows, and the
    card network's busiest second. Each month is exactly what ``twin province --month``
    gives with the same seeds. ``progress`` counts the distinct chunks of ``path``, then
    the chunks of distinct all-traditional days, whose number ``more`` is told once the
    online days are known."""
    reps = replications or prov.replications
    path = path or plan_rollout(prov, base_dir, months, reps, seed)
    per_second = {m: np.zeros((len(KINDS), DAY_S), np.int32) for m in months}
    online: list[list[OnlineDay]] = []
    known: dict[DayKey, dict[str, Any]] = {}
    for task, uses, (days, by_city) in zip(path.tasks, path.uses,
                                           execute(path.tasks, workers, scheduler, progress,
                                                   run_online), strict=True):
        online.append(days)
        if task.adoption == 0:  # a day no one booked is its own all-traditional day
            known.update((d.traditional, d.figures) for d in days)
        for month, _ in uses:
            for d in by_city.values():  # added in place: a path adds thousands of chunks
                per_second[month][:, d.start:d.start + d.counts.shape[1]] += d.counts
    jobs = _traditional_jobs(path, online, known)
    path.traditional_days_needed = sum(len(days) * len(uses) for task, uses, days
                                       in zip(path.tasks, path.uses, online, strict=True)
                                       if task.adoption > 0)
    path.traditional_days_run = sum(len(j.days) for j in jobs)
    if more:
        more(len(jobs))
    for job, figures in zip(jobs, execute(jobs, workers, scheduler, progress, run_traditional),
                            strict=True):
        known.update(zip(job.days, figures, strict=True))
    placed: dict[int, list[tuple[int, list[dict[str, Any]]]]] = {m: [] for m in months}
    for task, uses, days in zip(path.tasks, path.uses, online, strict=True):
        rows = [hospital_row(task, d.hospital, known[d.traditional], d.figures, d.no_shows)
                for d in days]
        for month, place in uses:
            placed[month].append((place, rows))
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
