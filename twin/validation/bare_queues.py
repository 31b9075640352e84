"""Bare queueing experiments: one M/G/c station and a tandem of M/G/c stations, steady
state with a warm-up, for validation against ``twin.validation.queueing`` and as the
benchmark's baseline. They run the hospital model's own resource (``FastResource``) and
its own service-time distributions (``Dist``), so what is validated is what the model
uses."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import simpy

from twin.model.arrivals import nspp_arrivals
from twin.model.resources import FastResource, FifoLine
from twin.model.streams import Streams
from twin.results.stats import t_interval
from twin.scenario.distributions import Dist
from twin.validation.queueing import mgc_reference, mgc_wait, mmc_wait

SERVICE_SHAPES = ("exponential", "fixed", "gamma", "lognormal")


def service_dist(shape: str, mean: float, cv: float | None = None) -> Dist:
    """A service time of this mean, by shape: exponential (cv 1), fixed (cv 0), gamma or
    lognormal (cv given), as a scenario file would write it."""
    if shape not in SERVICE_SHAPES:
        raise ValueError(f"service shape is one of {', '.join(SERVICE_SHAPES)}")
    if (shape in ("gamma", "lognormal")) != (cv is not None):
        raise ValueError(f"--service-cv is needed by gamma and lognormal, not by {shape}"
                         if cv is not None else f"{shape} service needs --service-cv")
    if cv is not None and not 0 < cv < math.inf:
        raise ValueError("--service-cv must be a positive number")
    at = f"{mean!r} min"
    if shape == "exponential":
        return Dist(dist="exponential", mean=at)
    if shape == "fixed":
        return Dist(dist="fixed", value=at)
    if shape == "gamma":
        return Dist(dist="gamma", mean=at, cv=cv)
    assert cv is not None
    sigma = math.sqrt(math.log1p(cv ** 2))  # a lognormal's cv^2 is exp(sigma^2) - 1
    return Dist(dist="lognormal", median=f"{mean / math.exp(sigma ** 2 / 2)!r} min",
                sigma=sigma)


def service_cv(shape: str, cv: float | None) -> float:
    return {"exponential": 1.0, "fixed": 0.0}.get(shape, cv or 0.0)


class Draws:
    """Samples of ``dist`` one at a time, drawn from numpy a block at a time (a stream's
    sequence is the same either way)."""

    def __init__(self, dist: Dist, rng: np.random.Generator, block: int = 1024) -> None:
        self.dist, self.rng, self.block = dist, rng, block
        self.left: list[float] = []

    def __call__(self) -> float:
        if not self.left:
            self.left = self.dist.sample(self.rng, self.block).tolist()[::-1]
        return self.left.pop()


@dataclass
class StationStats:
    mean_wait: float  # NaN when no customer who arrived after the warm-up reached service
    utilisation: float
    mean_queue: float  # time-average number waiting
    customers: int


def simulate_tandem(stations: list[tuple[int, float]], arrival_rate: float, minutes: float,
                    warmup: float, seed: int, replication: int, shape: str = "exponential",
                    cv: float | None = None) -> list[StationStats]:
    """Poisson arrivals through each (servers, service mean) in turn, service times of
    one shape (``service_dist``). Statistics cover customers arriving at a station after
    ``warmup``."""
    env = simpy.Environment()
    streams = Streams(seed, replication)
    inter = streams("arrivals")
    services = [Draws(service_dist(shape, mean, cv), streams(f"service-{i}"))
                for i, (_, mean) in enumerate(stations)]
    res = [FastResource(env, c) for c, _ in stations]
    n = len(stations)
    waits: list[list[float]] = [[] for _ in range(n)]
    busy = [0.0] * n
    area = [0.0] * n  # integral of queue length after warm-up
    last = [warmup] * n

    def mark(i: int) -> None:
        now = env.now
        if now > warmup:
            area[i] += len(res[i]) * (now - max(last[i], warmup))
            last[i] = now

    def customer():
        for i in range(n):
            t = env.now
            mark(i)  # before the queue may grow
            req = res[i].acquire()
            if req is not None:
                yield req
            s = services[i]()
            if t >= warmup:
                waits[i].append(env.now - t)
            start = env.now
            yield env.timeout(s)
            end = min(env.now, minutes)
            if end > warmup:
                busy[i] += end - max(start, warmup)
            mark(i)  # before the release hands the server to the next in queue
            res[i].release()

    def source():
        while True:
            yield env.timeout(inter.exponential(1.0 / arrival_rate))
            env.process(customer())

    if arrival_rate > 0:
        env.process(source())
    env.run(until=minutes)
    span = minutes - warmup
    out = []
    for i, (c, _) in enumerate(stations):
        mark(i)
        w = waits[i]
        out.append(StationStats(float(np.mean(w)) if w else float("nan"), busy[i] / (c * span),
                                area[i] / span, len(w)))
    return out


def simulate_line(servers: int, service_mean: float, arrival_rate: float, minutes: float,
                  warmup: float, seed: int, replication: int, shape: str = "exponential",
                  cv: float | None = None) -> StationStats:
    """One station on the model's computed first-come, first-served line (``FifoLine``,
    Lindley's recursion, no events: what its windows, kiosks and pharmacy run on), fed the
    arrivals and service times ``simulate_tandem`` draws for its first station, with the
    same statistics: so the line is held to the same theory, and to the simulated queue
    wait for wait."""
    streams = Streams(seed, replication)
    inter = streams("arrivals")
    draw = Draws(service_dist(shape, service_mean, cv), streams("service-0"))
    line = FifoLine(simpy.Environment(), servers)
    waits: list[float] = []
    busy = area = 0.0
    t = 0.0
    while arrival_rate > 0:
        t += inter.exponential(1.0 / arrival_rate)
        if t >= minutes:
            break
        service = draw()  # in arrival order: the order the queue's customers start in
        start = line.assign(t, service)
        area += max(0.0, min(start, minutes) - max(t, warmup))  # waiting, after warm-up
        if start >= minutes:
            continue  # still waiting at the end
        if t >= warmup:
            waits.append(start - t)
        if warmup < start + service < minutes:  # finished within the run
            busy += start + service - max(start, warmup)
    span = minutes - warmup
    return StationStats(float(np.mean(waits)) if waits else float("nan"),
                        busy / (servers * span), area / span, len(waits))


def station_experiment(servers: int, arrival_rate: float, service_mean: float, hours: float,
                       replications: int, seed: int, warmup_fraction: float = 0.2,
                       shape: str = "exponential", cv: float | None = None,
                       line: bool = False) -> dict:
    """The ``ehc twin station`` experiment: M/G/c, R replications, 95% t interval, beside
    the closed form (``mgc_wait``: exact for one server or exponential service); on the
    simulated queue (``FastResource``) or, with ``line``, the computed one (``FifoLine``)."""
    minutes = hours * 60
    service_dist(shape, service_mean, cv)  # refused before any replication runs
    warmup = warmup_fraction * minutes
    runs = [simulate_line(servers, service_mean, arrival_rate, minutes, warmup, seed, r,
                          shape, cv) if line else
            simulate_tandem([(servers, service_mean)], arrival_rate, minutes, warmup, seed,
                            r, shape, cv)[0]
            for r in range(replications)]
    waits = [r.mean_wait for r in runs]
    # a replication where nobody who came after the warm-up reached service has no wait
    # to average (no arrivals, or a queue that grows past the horizon): none is reported,
    # not a wait of zero
    mean, lo, hi = (None, None, None) if np.isnan(waits).any() else t_interval(waits)
    scv = service_cv(shape, cv)
    theory = mgc_wait(servers, arrival_rate, service_mean, scv)
    return {
        "servers": servers, "arrival_rate": arrival_rate, "service_mean": service_mean,
        "service": shape, "service_cv": scv,
        "resource": "FifoLine" if line else "FastResource",
        "hours": hours, "replications": replications, "seed": seed,
        "warmup_minutes": warmup_fraction * minutes,
        "mean_wait": mean, "ci_low": lo, "ci_high": hi,
        "utilisation": float(np.mean([r.utilisation for r in runs])),
        "mean_queue": float(np.mean([r.mean_queue for r in runs])),
        "customers": int(sum(r.customers for r in runs)),
        "theory_wait": theory, "theory": mgc_reference(servers, scv),
        "theory_within_ci": None if lo is None or hi is None or not math.isfinite(theory)
        else bool(lo <= theory <= hi),
        "erlang_c_wait": mmc_wait(servers, arrival_rate, service_mean),  # M/M/c, same mean
    }


def infinite_server_counts(profile: dict[int, float], start: float, end: float,
                           daily: float, service: Dist, at: np.ndarray, seed: int,
                           replications: int) -> np.ndarray:
    """The number in an M_t/G/infinity system at the times ``at``, one row a replication:
    the model's own day of arrivals (``nspp_arrivals``: an hourly profile, ``daily`` of
    them between ``start`` and ``end``) and its own service draws, nobody waiting."""
    rows = []
    for r in range(replications):
        streams = Streams(seed, r)
        arrive = nspp_arrivals(streams("arrivals"), profile, start, end, daily)
        leave = arrive + service.sample(streams("service-0"), len(arrive))
        rows.append([int(np.sum((arrive <= t) & (leave > t))) for t in at])
    return np.array(rows)
