"""Closed-form queueing results the simulation is validated against."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (offered load a = lambda/mu)."""
    c, a = servers, offered_load
    if c <= 0:
        raise ValueError("servers must be positive")
    if a >= c:
        return 1.0
    # Erlang B by the stable recursion, then C from B
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1 - rho + rho * b)


def mmc_wait(servers: int, arrival_rate: float, service_mean: float) -> float:
    """Mean time in queue (Wq) of an M/M/c queue; infinite when unstable."""
    mu = 1.0 / service_mean
    if arrival_rate >= servers * mu:
        return float("inf")
    return erlang_c(servers, arrival_rate / mu) / (servers * mu - arrival_rate)


def jackson_tandem(arrival_rate: float, stations: list[tuple[int, float]]) -> list[float]:
    """Mean queue wait at each station of an open tandem of M/M/c stations (product form:
    each station behaves as an independent M/M/c fed at the external rate)."""
    return [mmc_wait(c, arrival_rate, mean) for c, mean in stations]


def mgc_wait(servers: int, arrival_rate: float, service_mean: float,
             service_cv: float) -> float:
    """Mean time in queue of an M/G/c queue by Allen and Cunneen's approximation, Erlang
    C's wait scaled by (1 + cv^2) / 2 (Poisson arrivals). Exact for one server (it is then
    Pollaczek-Khinchine's formula) and for exponential service (cv 1: Erlang C)."""
    return mmc_wait(servers, arrival_rate, service_mean) * (1 + service_cv ** 2) / 2


def mgc_reference(servers: int, service_cv: float) -> str:
    """Which closed form ``mgc_wait`` is at these parameters, and whether it is exact."""
    if service_cv == 1:
        return "Erlang C (exact)"
    if servers == 1:
        return "Pollaczek-Khinchine (exact)"
    return "Allen-Cunneen (approximation)"


def relaxation_time(servers: int, arrival_rate: float, service_mean: float,
                    service_cv: float = 1.0) -> float:
    """How long a queue takes to forget its start, by Morse's estimate for M/M/1,
    1 / (mu (1 - sqrt(rho))^2), with the c servers' rate for mu and scaled by
    (1 + cv^2) / 2 as the wait is: a run much shorter than this reports its start, not the
    steady state. Infinite when unstable."""
    rho = arrival_rate * service_mean / servers
    if rho >= 1:
        return float("inf")
    return service_mean / servers / (1 - rho ** 0.5) ** 2 * (1 + service_cv ** 2) / 2


def infinite_server_mean(rate: Callable[[np.ndarray], np.ndarray],
                         sf: Callable[[np.ndarray], np.ndarray], start: float, end: float,
                         at: np.ndarray, step: float = 0.05) -> np.ndarray:
    """Mean number in an M_t/G/infinity system at the times ``at`` (minutes), arrivals
    between ``start`` and ``end`` at ``rate(t)``: m(t) = integral of rate(u) P(S > t - u)
    du over the arrivals before t (``sf``: ``Dist.survival``), and the number is Poisson
    with that mean (Eick, Massey and Whitt, 1993)."""
    out = []
    for t in np.asarray(at, dtype=float):
        u = np.arange(start, min(t, end), step) + step / 2  # midpoints
        out.append(float(np.sum(rate(u) * sf(t - u)) * step) if u.size else 0.0)
    return np.array(out)
