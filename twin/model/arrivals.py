"""Non-homogeneous Poisson arrivals by thinning (Lewis & Shedler) from an hourly profile."""

from __future__ import annotations

import numpy as np


def rate_function(profile: dict[int, float], start: float, end: float, daily: float):
    """(rate(t) per minute as a vectorised function, its maximum, its integral over
    [start, end]) scaled so the integral equals ``daily``."""
    hours = np.arange(24)
    weights = np.array([profile.get(int(h), 0.0) for h in hours], dtype=float)
    edges = np.arange(25) * 60.0
    overlap = np.clip(np.minimum(edges[1:], end) - np.maximum(edges[:-1], start), 0, None)
    mass = float((weights * overlap).sum())
    scale = daily / mass if mass > 0 else 0.0
    per_min = weights * scale

    def rate(t: np.ndarray) -> np.ndarray:
        return per_min[np.clip((t // 60).astype(int), 0, 23)]

    live = per_min[overlap > 0]
    return rate, float(live.max()) if live.size else 0.0, daily if mass > 0 else 0.0


def nspp_arrivals(rng: np.random.Generator, profile: dict[int, float], start: float,
                  end: float, daily: float) -> np.ndarray:
    """Sorted arrival times (minutes from midnight) in [start, end)."""
    rate, rmax, _ = rate_function(profile, start, end, daily)
    if rmax <= 0 or end <= start:
        return np.empty(0)
    n = rng.poisson(rmax * (end - start))
    times = np.sort(rng.uniform(start, end, n))
    keep = rng.uniform(0, rmax, n) < rate(times)
    return times[keep]
