"""Confidence intervals and the replications a target precision needs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a Student t interval; a single value has no width (nan)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size < 2:
        return (mean, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (mean, mean - half, mean + half)


def kpi_interval(values: Sequence[float], level: float = 0.95, upper: float | None = None
                 ) -> tuple[float, float, float, str]:
    """(mean, low, high, method) for a quantity that cannot be negative (a wait, a time,
    a count) nor, when ``upper`` is given, above it (a share: 1): the t interval, unless
    it reaches past a bound (few, skewed replications), then the percentile bootstrap of
    the mean (10,000 resamples, fixed seed), which stays within the values' own range."""
    mean, low, high = t_interval(values, level)
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    over = upper is not None and high > upper
    if math.isnan(low) or (low >= 0 and not over) or (x < 0).any() \
            or (upper is not None and (x > upper).any()):
        return mean, low, high, "t"
    rng = np.random.default_rng(20240601)
    means = x[rng.integers(0, x.size, size=(10_000, x.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return (mean, float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)),
            "bootstrap")


def replications_needed(values: Sequence[float], rel_precision: float = 0.05,
                        level: float = 0.95, cap: int = 10_000) -> int:
    """Smallest n whose t half-width is within ``rel_precision`` of the mean, using the
    sample's standard deviation (the confidence-interval method of Hoad et al.)."""
    x = np.asarray(values, dtype=float)
    if x.size < 2 or x.mean() == 0:
        return max(x.size, 2)
    sd, mean = x.std(ddof=1), abs(x.mean())
    for n in range(2, cap + 1):
        half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
        if half <= rel_precision * mean:
            return n
    return cap
