"""One-at-a-time sensitivity of the saving to each registered assumption: the scenario
with the assumption at its low end and at its high end, each run over the same
replications and seeds as the scenario itself (common random numbers), so that the swing
is the assumption's doing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import qmc

from twin.experiments.runner import run_replications
from twin.results.stats import t_interval
from twin.scenario.assumptions import ASSUMPTIONS, Assumption, with_value
from twin.scenario.schema import Scenario, clock_minutes
from twin.scenario.units import minutes


def one_at_a_time(sc: Scenario, replications: int, *, seed: int | None = None,
                  workers: int = 1, assumptions: tuple[Assumption, ...] = ASSUMPTIONS,
                  progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """One row per assumption: the saving (min per shown visit, 95% CI) at the low and
    the high end, the base saving, and the swing (high minus low), largest swing first."""
    def saved(variant: Scenario) -> tuple[float, float, float]:
        res = run_replications(variant, replications, seed=seed, workers=workers,
                               keep_patients=False, progress=progress)
        return t_interval(res.kpis.time_saved.to_numpy(float))

    base = saved(sc)
    rows = []
    for a in assumptions:
        lo, hi = saved(with_value(sc, a.key, a.low)), saved(with_value(sc, a.key, a.high))
        rows.append({"assumption": a.key, "low": str(a.low), "high": str(a.high),
                     "why": a.why, "saved_base": base[0],
                     "saved_low": lo[0], "saved_low_ci_low": lo[1], "saved_low_ci_high": lo[2],
                     "saved_high": hi[0], "saved_high_ci_low": hi[1],
                     "saved_high_ci_high": hi[2], "swing": hi[0] - lo[0]})
    df = pd.DataFrame(rows)
    return df.reindex(df.swing.abs().sort_values(ascending=False).index).reset_index(drop=True)


def _between(low: Any, high: Any, u: float) -> Any:
    """The value a fraction ``u`` of the way from ``low`` to ``high`` (numbers, or
    numbers with a unit as in scenario files; whole numbers stay whole)."""
    if isinstance(low, str) and ":" in low:  # a time of day
        t = round(clock_minutes(low) + u * (clock_minutes(high) - clock_minutes(low)))
        return f"{t // 60:02d}:{t % 60:02d}"
    if isinstance(low, str):  # a duration: parsed as a scenario file would be
        a, b = minutes(low), minutes(high)
        return f"{a + u * (b - a):.6g} min"
    value = low + u * (high - low)
    return round(value) if isinstance(low, int) and isinstance(high, int) else value


def probabilistic(sc: Scenario, samples: int, replications: int, *, seed: int | None = None,
                  workers: int = 1, assumptions: tuple[Assumption, ...] = ASSUMPTIONS,
                  progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """A Latin hypercube over every assumption's range at once: one row per sample with
    the values drawn and the saving (mean over the replications, the same seeds for every
    sample). Its spread is the weight of what nobody measured on the headline."""
    rows = []
    for i, values in enumerate(latin_hypercube(samples, sc.seed if seed is None else seed,
                                               assumptions)):
        res = run_replications(apply(sc, values), replications, seed=seed, workers=workers,
                               keep_patients=False, progress=progress)
        rows.append({"sample": i, **values, "saved": float(res.kpis.time_saved.mean())})
    return pd.DataFrame(rows)


def latin_hypercube(samples: int, seed: int,
                    assumptions: tuple[Assumption, ...] = ASSUMPTIONS) -> list[dict[str, Any]]:
    """``samples`` settings of every assumption at once, one per stratum of each range."""
    cube = qmc.LatinHypercube(d=len(assumptions), seed=seed)
    return [{a.key: _between(a.low, a.high, float(u))
             for a, u in zip(assumptions, point, strict=True)}
            for point in cube.random(samples)]


def apply(sc: Scenario, values: dict[str, Any]) -> Scenario:
    """The scenario with each dotted key set (validated as in a scenario file)."""
    for key, value in values.items():
        sc = with_value(sc, key, value)
    return sc


def interval(df: pd.DataFrame, level: float = 0.95) -> tuple[float, float, float]:
    """(median, low, high) of the saving over the samples (central ``level``)."""
    x = df.saved.to_numpy(float)
    tail = (1 - level) / 2 * 100
    return (float(np.median(x)), float(np.percentile(x, tail)),
            float(np.percentile(x, 100 - tail)))
