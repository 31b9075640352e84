"""Closed-form queueing results the simulation is validated against."""

from __future__ import annotations


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
