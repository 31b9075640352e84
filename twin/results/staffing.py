"""Staff needed per station and clock hour for a stated service level: the smallest
number of servers that serves the hour's uses (as the simulation saw them arrive, with
their mean service time) so that ``level`` of them wait at most ``target`` minutes, by
Erlang C: P(W <= t) = 1 - C(c, a) exp(-(c mu - lambda) t). Sized hour by hour, not from
the day's average utilisation, so a morning peak gets the windows it needs."""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd

from twin.validation.queueing import erlang_c

SIZED = ("registration window", "kiosk", "payment window", "pharmacy window")


def servers_for(arrival_rate: float, service_mean: float, target: float,
                level: float, cap: int = 1000) -> int:
    """The fewest servers with P(wait <= target) >= level (0 when nobody comes)."""
    if arrival_rate <= 0 or service_mean <= 0:
        return 0
    a = arrival_rate * service_mean
    mu = 1.0 / service_mean
    for c in range(max(1, math.floor(a) + 1), cap + 1):
        within = 1 - erlang_c(c, a) * math.exp(-(c * mu - arrival_rate) * target)
        if within >= level:
            return c
    return cap


def staffing_by_hour(steps: pd.DataFrame, staffed: Callable[[str, int], float],
                     target: float, level: float) -> pd.DataFrame:
    """One row per (replication, station, hour): uses, mean service (min), the servers
    the level needs, the servers staffed (``staffed(station, hour)``: the scenario's
    shifts), and the simulated share within the target."""
    df = steps[steps.station.isin(SIZED)].assign(hour=lambda d: (d.queued_at // 60)
                                                 .astype(int))
    keys = ["replication", "station", "hour"] if "replication" in df else ["station", "hour"]
    rows = []
    for key, g in df.groupby(keys):
        station, hour = key[-2], key[-1]
        rate, mean = len(g) / 60.0, float(g.service.mean())
        rows.append({**dict(zip(keys, key, strict=True)), "uses": len(g),
                     "service_mean": mean,
                     "needed": servers_for(rate, mean, target, level),
                     "staffed": staffed(station, int(hour)),
                     "within_target": float((g.wait <= target).mean())})
    return pd.DataFrame(rows)
