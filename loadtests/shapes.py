"""Load shapes: how many users (each offering a fixed rate) at each moment of a test.

Each returns ``users(t)`` for t seconds into the test, or None when the test is over."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

Shape = Callable[[float], int | None]


def constant(users: int, duration_s: float) -> Shape:
    return lambda t: users if t < duration_s else None


def step(start: int, step_users: int, step_s: float, steps: int) -> Shape:
    """``start`` users, ``step_users`` more every ``step_s`` seconds, ``steps`` times."""
    return lambda t: start + step_users * int(t // step_s) if t < step_s * steps else None


def spike(base: int, peak: int, at_s: float, length_s: float, duration_s: float) -> Shape:
    def users(t: float) -> int | None:
        if t >= duration_s:
            return None
        return peak if at_s <= t < at_s + length_s else base
    return users


def demand_curve(path: Path, *, kind: str = "total", compress: float = 60.0,
                 scale: float = 1.0, rate_per_user: float = 1.0) -> Shape:
    """Replay the twin's demand CSV (``ehc twin province``): the busy part of the day
    (first to last second with traffic), ``compress`` simulated seconds per test second,
    the rate × ``scale`` offered by users that each send ``rate_per_user`` requests/s.
    Rates are averaged over each compressed window, so the curve's shape survives."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    if not rows or kind not in rows[0]:
        raise ValueError(f"{path}: no column {kind!r}")
    rate = [float(r[kind]) for r in rows]
    live = [i for i, v in enumerate(rate) if v > 0]
    if not live:
        raise ValueError(f"{path}: the demand curve is empty")
    first, last = live[0], live[-1]
    duration = (last - first + 1) / compress

    def users(t: float) -> int | None:
        if t >= duration:
            return None
        lo = first + int(t * compress)
        window = rate[lo:lo + max(1, int(compress))]
        mean = sum(window) / len(window)
        return max(1, math.ceil(mean * scale / rate_per_user))

    return users


def from_options(name: str, *, users: int, duration_s: float, demand_csv: Path | None = None,
                 compress: float = 60.0, scale: float = 1.0, rate_per_user: float = 1.0
                 ) -> Shape:
    if name == "constant":
        return constant(users, duration_s)
    if name == "step":
        n = 5
        return step(max(1, users // n), max(1, users // n), duration_s / n, n)
    if name == "spike":
        return spike(max(1, users // 4), users, duration_s / 3, duration_s / 6, duration_s)
    if name == "demand":
        if demand_csv is None:
            raise ValueError("the demand shape needs a demand CSV (ehc twin province)")
        return demand_curve(demand_csv, compress=compress, scale=scale,
                            rate_per_user=rate_per_user)
    raise ValueError(f"unknown shape {name!r} (constant, step, spike, demand)")
