"""Bare queueing experiments: one M/M/c station and a tandem of M/M/c stations, steady
state with a warm-up, for validation against ``twin.validation.queueing`` and as the
benchmark's baseline. They run the hospital model's own resource (``FastResource``), so
what is validated is what the model uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from twin.model.resources import FastResource
from twin.model.streams import Streams
from twin.results.stats import t_interval


@dataclass
class StationStats:
    mean_wait: float  # NaN when no customer who arrived after the warm-up reached service
    utilisation: float
    mean_queue: float  # time-average number waiting
    customers: int


def simulate_tandem(stations: list[tuple[int, float]], arrival_rate: float, minutes: float,
                    warmup: float, seed: int, replication: int) -> list[StationStats]:
    """Poisson arrivals through each (servers, exponential service mean) in turn.
    Statistics cover customers arriving at a station after ``warmup``."""
    env = simpy.Environment()
    streams = Streams(seed, replication)
    inter = streams("arrivals")
    services = [streams(f"service-{i}") for i in range(len(stations))]
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
        for i, (_, mean) in enumerate(stations):
            t = env.now
            mark(i)  # before the queue may grow
            req = res[i].acquire()
            if req is not None:
                yield req
            s = services[i].exponential(mean)
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


def station_experiment(servers: int, arrival_rate: float, service_mean: float, hours: float,
                       replications: int, seed: int, warmup_fraction: float = 0.2) -> dict:
    """The ``ehc twin station`` experiment: M/M/c, R replications, 95% t interval."""
    minutes = hours * 60
    runs = [simulate_tandem([(servers, service_mean)], arrival_rate, minutes,
                            warmup_fraction * minutes, seed, r)[0]
            for r in range(replications)]
    waits = [r.mean_wait for r in runs]
    # a replication where nobody who came after the warm-up reached service has no wait
    # to average (no arrivals, or a queue that grows past the horizon): none is reported,
    # not a wait of zero
    mean, lo, hi = (None, None, None) if np.isnan(waits).any() else t_interval(waits)
    return {
        "servers": servers, "arrival_rate": arrival_rate, "service_mean": service_mean,
        "hours": hours, "replications": replications, "seed": seed,
        "warmup_minutes": warmup_fraction * minutes,
        "mean_wait": mean, "ci_low": lo, "ci_high": hi,
        "utilisation": float(np.mean([r.utilisation for r in runs])),
        "mean_queue": float(np.mean([r.mean_queue for r in runs])),
        "customers": int(sum(r.customers for r in runs)),
    }
