"""The fewest servers that meet a service level, hour by hour, found by simulation.

A target reads like ``p90 wait <= 10 min``: at each station and in each hour of the day, at
least 90 % of the uses queued in that hour wait at most 10 minutes. The search starts from
the Erlang C sizing of each hour's simulated demand, then (every round one whole day of
the same patients, common random numbers):

1. adds a server in every station-hour that misses the level, until none does;
2. takes servers away one station-hour at a time, the most slack first, keeping each
   removal after which the whole day still meets the level everywhere.

A final verification run of the chosen plan with twice the replications reports each
station's service level with its 95 % interval. The plan is a scenario file (``extends``
the one it was made for, ``resources.shifts`` hour by hour)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd

from twin.experiments.runner import RunResult, run_replications
from twin.results.staffing import servers_for
from twin.results.stats import kpi_interval
from twin.scenario.schema import Scenario, ShiftKey
from twin.scenario.units import minutes

STATIONS = {"registration_windows": "registration window", "payment_windows": "payment window",
            "pharmacy_windows": "pharmacy window", "kiosks": "kiosk"}
_TARGET = re.compile(r"^\s*p(\d{1,2})\s+wait\s*<=\s*(.+?)\s*$")


@dataclass(frozen=True)
class Target:
    level: float  # share of uses that must wait at most ``wait`` minutes
    wait: float

    @classmethod
    def parse(cls, text: str) -> Target:
        """``"p90 wait <= 10 min"``."""
        m = _TARGET.match(text)
        if not m or not 1 <= int(m.group(1)) <= 99:
            raise ValueError(f"a target reads like 'p90 wait <= 10 min' (got {text!r})")
        wait = minutes(m.group(2))
        if wait < 0:
            raise ValueError(f"a wait target is 0 min or more (got {text!r})")
        return cls(int(m.group(1)) / 100, wait)

    def __str__(self) -> str:
        return f"p{self.level * 100:.0f} wait <= {self.wait:g} min"


@dataclass
class Plan:
    schedule: dict[str, dict[int, int]]  # scenario key -> hour -> servers open
    rounds: int = 0
    checks: pd.DataFrame = field(default_factory=pd.DataFrame)  # the verification run
    # (station, hour) still missing the target when the search ran out of rounds
    missed: list[tuple[str, int]] = field(default_factory=list)

    def shifts(self) -> dict[str, dict[str, int]]:
        return {key: {f"{h:02d}:00": c for h, c in sorted(hours.items())}
                for key, hours in self.schedule.items()}

    def staff_hours(self) -> int:
        return sum(sum(hours.values()) for hours in self.schedule.values())


def hours_of(sc: Scenario) -> list[int]:
    """The clock hours a station may serve in: from the first arrival to closing."""
    return list(range(int(sc.day.arrivals_from // 60), math.ceil(sc.day.closing / 60)))


def with_schedule(sc: Scenario, schedule: dict[str, dict[int, int]]) -> Scenario:
    """The scenario with the schedule as its shifts (the counts before the first hour are
    the first hour's)."""
    shifts = dict(sc.resources.shifts)
    update: dict[str, Any] = {}
    for key, hours in schedule.items():
        shifts[cast(ShiftKey, key)] = {h * 60.0: c for h, c in sorted(hours.items())}
        update[key] = max(1, hours[min(hours)])
    return sc.model_copy(update={"resources": sc.resources.model_copy(
        update={**update, "shifts": shifts})})


def hourly_shares(res: RunResult, target: Target) -> dict[tuple[str, int], tuple[float, int]]:
    """(station, hour) -> (share of uses within the wait, uses), pooled over replications."""
    steps = res.steps
    assert steps is not None
    df = steps[steps.station.isin(STATIONS.values())]
    df = df.assign(hour=(df.queued_at // 60).astype(int), ok=df.wait <= target.wait + 1e-9)
    g = df.groupby(["station", "hour"]).ok
    return {k: (float(m), int(n)) for k, m, n in zip(g.mean().index, g.mean(), g.size(),
                                                      strict=True)}


def _meets(shares: dict, station: str, hour: int, target: Target) -> bool:
    share, _ = shares.get((station, hour), (1.0, 0))
    return share >= target.level


def initial(sc: Scenario, keys: list[str], target: Target, replications: int,
            seed: int | None) -> dict[str, dict[int, int]]:
    """Erlang C per station and hour from the demand a day with today's staffing sees."""
    res = run_replications(sc, replications, seed=seed, keep_patients=True,
                           counterfactual=False)
    steps = res.steps
    assert steps is not None
    schedule: dict[str, dict[int, int]] = {}
    reps = max(res.kpis.replication.nunique(), 1)
    for key in keys:
        g = steps[steps.station == STATIONS[key]]
        by_hour = g.assign(hour=(g.queued_at // 60).astype(int)).groupby("hour").service
        schedule[key] = {}
        for h in hours_of(sc):
            if h in by_hour.groups:
                s = by_hour.get_group(h)
                schedule[key][h] = max(1, servers_for(len(s) / reps / 60.0, float(s.mean()),
                                                      target.wait, target.level))
            else:
                schedule[key][h] = 1
    return schedule


def optimise(sc: Scenario, target: Target, keys: list[str], replications: int = 3, *,
             seed: int | None = None, max_rounds: int = 80,
             progress: Callable[[str], None] | None = None) -> Plan:
    """The fewest servers per station and hour meeting ``target`` on every hour that has
    uses (see the module's docstring), verified with twice the replications."""
    unknown = set(keys) - set(STATIONS)
    if unknown:
        raise ValueError(f"stations to optimise are {sorted(STATIONS)} (got {sorted(unknown)})")
    schedule = initial(sc, keys, target, replications, seed)
    say = progress or (lambda _: None)
    rounds = 0

    def day(s: dict[str, dict[int, int]]) -> dict:
        nonlocal rounds
        rounds += 1
        res = run_replications(with_schedule(sc, s), replications, seed=seed,
                               keep_patients=True, counterfactual=False)
        return hourly_shares(res, target)

    shares = day(schedule)
    while rounds < max_rounds:  # 1. add where the level is missed
        short = [(k, h) for k in keys for h in schedule[k]
                 if not _meets(shares, STATIONS[k], h, target)]
        if not short:
            break
        say(f"round {rounds}: {len(short)} station-hour(s) short, adding a server to each")
        for k, h in short:
            schedule[k][h] += 1
        shares = day(schedule)
    missed = [(STATIONS[k], h) for k in keys for h in schedule[k]
              if not _meets(shares, STATIONS[k], h, target)]
    # 2. take away what is not needed: one server-hour at a time, the most slack first,
    # kept when the whole day still meets the level everywhere
    order = sorted(((k, h) for k in keys for h in schedule[k]),
                   key=lambda kh: -shares.get((STATIONS[kh[0]], kh[1]), (1.0, 0))[0])
    for k, h in order:
        while schedule[k][h] > 1 and rounds < max_rounds:
            schedule[k][h] -= 1
            got = day(schedule)
            if all(_meets(got, STATIONS[k2], h2, target) for k2 in keys for h2 in schedule[k2]):
                say(f"round {rounds}: {STATIONS[k]} at {h:02d}:00 needs only {schedule[k][h]}")
                shares = got
                continue
            schedule[k][h] += 1
            break
    return Plan(schedule, rounds, verify(sc, schedule, target, keys, 2 * replications, seed),
                missed)


def verify(sc: Scenario, schedule: dict[str, dict[int, int]], target: Target, keys: list[str],
           replications: int, seed: int | None) -> pd.DataFrame:
    """Per station: the share of uses within the wait and the p-level wait, each with its
    95 % interval over replications, for the plan."""
    res = run_replications(with_schedule(sc, schedule), replications, seed=seed,
                           keep_patients=True, counterfactual=False)
    steps = res.steps
    assert steps is not None
    rows = []
    for key in keys:
        g = steps[steps.station == STATIONS[key]]
        per_rep = g.groupby("replication").wait
        within = per_rep.apply(lambda w: float((w <= target.wait + 1e-9).mean())).to_numpy()
        level_wait = per_rep.quantile(target.level).to_numpy()
        # a share stays within 0-1 and a wait at or above 0 (else the bootstrap interval)
        s, s_lo, s_hi, _ = kpi_interval(within, upper=1.0)
        q, q_lo, q_hi, _ = kpi_interval(level_wait)
        rows.append({"station": STATIONS[key], "within_target": s, "within_low": s_lo,
                     "within_high": s_hi, f"p{target.level * 100:.0f}_wait": q,
                     "wait_low": q_lo, "wait_high": q_hi,
                     "uses_per_day": float(len(g) / max(replications, 1))})
    return pd.DataFrame(rows)


def current_staff_hours(sc: Scenario, keys: list[str]) -> int:
    """Server-hours of the scenario's own plan over the same hours."""
    return int(sum(round(sc.resources.open_at(cast(ShiftKey, k), h * 60 + 30)) for k in keys
                   for h in hours_of(sc)))


def plan_file(plan: Plan, scenario: Path, target: Target, out: Path) -> Path:
    """The plan as a scenario file: it extends the one it was made for."""
    import yaml

    path = out / "plan.yaml"
    header = (f"# The fewest servers per hour meeting '{target}' (ehc twin optimise)\n"
              f"# Run it: ehc twin run {path}\n")
    body = {"extends": str(scenario.resolve()), "name": f"{scenario.stem}_optimised",
            "resources": {"shifts": plan.shifts()}}
    path.write_text(header + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    return path


def schedule_frame(plan: Plan, sc: Scenario) -> pd.DataFrame:
    """One row per (station, hour): the plan's servers beside the scenario's own."""
    rows = [{"station": STATIONS[k], "hour": h, "servers": c,
             "current": round(sc.resources.open_at(cast(ShiftKey, k), h * 60 + 30))}
            for k, hours in plan.schedule.items() for h, c in sorted(hours.items())]
    return pd.DataFrame(rows)

