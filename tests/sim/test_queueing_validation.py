"""The simulation engine against queueing theory: Erlang C, Pollaczek-Khinchine, Allen and
Cunneen's approximation, Jackson tandems, Cobham's priorities, Little's law."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from twin.model.streams import Streams
from twin.validation.bare_queues import (
    Draws,
    infinite_server_counts,
    service_dist,
    simulate_line,
    simulate_tandem,
    station_experiment,
)
from twin.validation.queueing import (
    erlang_c,
    infinite_server_mean,
    jackson_tandem,
    mgc_reference,
    mgc_wait,
    mmc_wait,
    relaxation_time,
)


def test_erlang_c_closed_form_known_values() -> None:
    assert erlang_c(1, 0.7) == pytest.approx(0.7)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert mmc_wait(1, 0.5, 1.0) == pytest.approx(1.0)  # rho/(mu-lambda)
    # a textbook value: c=5, a=4 -> C = 0.5541
    assert erlang_c(5, 4.0) == pytest.approx(0.5541, abs=1e-4)
    assert mmc_wait(2, 3.0, 1.0) == float("inf")


def test_mgc_closed_forms() -> None:
    """M/D/1 waits half M/M/1's (Pollaczek-Khinchine); exponential service is Erlang C."""
    rho, mean = 0.8, 2.0
    assert mgc_wait(1, rho / mean, mean, 0.0) == pytest.approx(rho * mean / (2 * (1 - rho)))
    assert mgc_wait(4, 1.5, 2.0, 1.0) == mmc_wait(4, 1.5, 2.0)
    assert mgc_wait(1, 0.4, 2.0, 2.0) == pytest.approx(0.4 * (2.0 ** 2 * 5) / (2 * 0.2))
    assert mgc_reference(1, 0.5).endswith("(exact)")
    assert mgc_reference(3, 1.0).endswith("(exact)")
    assert mgc_reference(3, 0.5).endswith("(approximation)")


@pytest.mark.parametrize(("shape", "cv"), [("exponential", None), ("fixed", None),
                                           ("gamma", 2.0), ("lognormal", 0.45)])
def test_service_shapes_have_the_mean_and_spread_asked_for(shape: str, cv: float | None
                                                          ) -> None:
    draw = Draws(service_dist(shape, 3.0, cv), Streams(7, 0)("service-0"), block=500)
    x = np.array([draw() for _ in range(200_000)])
    want_cv = {"exponential": 1.0, "fixed": 0.0}.get(shape, cv)
    assert x.mean() == pytest.approx(3.0, rel=0.02)
    assert x.std() / x.mean() == pytest.approx(want_cv, abs=0.04)


@pytest.mark.parametrize(("shape", "cv", "says"), [
    ("lognormal", None, "lognormal service needs --service-cv"),
    ("fixed", 0.3, "not by fixed"), ("weibull", None, "service shape is one of"),
    ("gamma", -1.0, "greater than or equal to")])
def test_station_refuses_a_shape_it_cannot_draw(shape: str, cv: float | None,
                                                says: str) -> None:
    args = ["--service", shape] + ([] if cv is None else ["--service-cv", str(cv)])
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "station", "--servers",
                          "1", "--arrival-rate", "0.5", "--service-mean", "1", *args],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert says in " ".join(res.stderr.split()), res.stderr


@pytest.mark.parametrize(("servers", "rate", "mean", "shape", "cv"), [
    (1, 0.8, 1.0, "exponential", None), (3, 2.4, 1.0, "fixed", None),
    (4, 1.7, 2.0, "lognormal", 0.5), (2, 1.9, 1.0, "gamma", 2.0), (2, 3.0, 1.0, "exponential",
                                                                  None)])
def test_the_computed_line_waits_as_the_simulated_queue(servers: int, rate: float,
                                                        mean: float, shape: str,
                                                        cv: float | None) -> None:
    """The model's windows, kiosks and pharmacy compute their waits (``FifoLine``,
    Lindley's recursion) instead of simulating the queue (``FastResource``, which the
    theory tests hold): on the same arrivals and services both give every statistic
    alike, overloaded too (rho 1.5, the last case)."""
    queue = simulate_tandem([(servers, mean)], rate, 6000, 1200, 7, 0, shape, cv)[0]
    line = simulate_line(servers, mean, rate, 6000, 1200, 7, 0, shape, cv)
    assert line.customers == queue.customers > 0
    for got, want in ((line.mean_wait, queue.mean_wait), (line.utilisation,
                      queue.utilisation), (line.mean_queue, queue.mean_queue)):
        assert got == pytest.approx(want, rel=1e-9)


def test_a_run_too_short_for_its_load_is_warned_of() -> None:
    """Near rho 1 a queue forgets its start slowly (Morse: 1 / (mu (1 - sqrt rho)^2), four
    mean services at rho 0.25): a run of fewer than ten such times is said to be short."""
    assert relaxation_time(1, 0.25, 1.0) == pytest.approx(4.0)
    assert relaxation_time(1, 0.25, 1.0, 0.0) == pytest.approx(2.0)  # fixed service
    assert relaxation_time(2, 2.0, 1.0) == float("inf")

    def warned(rate: str) -> str:
        res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "station",
                              "--servers", "2", "--arrival-rate", rate, "--service-mean", "2",
                              "--hours", "20", "--replications", "2", "--json"],
                             capture_output=True, text=True, timeout=120, check=True)
        json.loads(res.stdout)  # the JSON stays clean: the warning is on stderr
        return " ".join(res.stderr.split())
    assert "forgets its start over about" in warned("0.99")
    assert "forgets its start" not in warned("0.5")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("servers", "rho", "shape", "cv", "tolerance"),
    [(1, 0.8, "fixed", None, 0.05), (1, 0.85, "lognormal", 0.53, 0.08),
     (1, 0.7, "gamma", 2.0, 0.10), (4, 0.85, "lognormal", 0.5, 0.08),
     (3, 0.8, "fixed", None, 0.08)])
def test_mgc_matches_pollaczek_khinchine_and_allen_cunneen(
        servers: int, rho: float, shape: str, cv: float | None, tolerance: float) -> None:
    """The model's own service shapes (its stations are lognormal, cv 0.4-0.55): exact
    for one server; for several, Allen and Cunneen's approximation, whose own error at
    these parameters is a few per cent."""
    service_mean = 2.0
    lam = rho * servers / service_mean
    r = station_experiment(servers, lam, service_mean, 400, 8, seed=11, shape=shape, cv=cv)
    assert r["mean_wait"] == pytest.approx(r["theory_wait"], rel=tolerance), r
    line = station_experiment(servers, lam, service_mean, 400, 8, seed=11, shape=shape, cv=cv,
                              line=True)  # the model's computed line: the same waits
    assert line["mean_wait"] == pytest.approx(r["mean_wait"], rel=1e-9)
    assert r["utilisation"] == pytest.approx(rho, rel=0.02)
    assert r["mean_queue"] == pytest.approx(lam * r["mean_wait"], rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("servers", "rho", "hours", "tolerance"),
    [(1, 0.5, 300, 0.05), (3, 0.8, 300, 0.06), (5, 0.9, 400, 0.08), (8, 0.95, 600, 0.12)],
)
def test_mmc_matches_erlang_c(servers: int, rho: float, hours: float, tolerance: float) -> None:
    """Tolerance widens with rho: waits near saturation converge slowly (the variance of
    the mean wait grows like 1/(1-rho)^4)."""
    service_mean = 2.0
    lam = rho * servers / service_mean
    r = station_experiment(servers, lam, service_mean, hours, 8, seed=11)
    theory = mmc_wait(servers, lam, service_mean)
    assert r["mean_wait"] == pytest.approx(theory, rel=tolerance), (r, theory)
    assert r["utilisation"] == pytest.approx(rho, rel=0.02)
    # Little's law on the simulated output: Lq = lambda * Wq
    assert r["mean_queue"] == pytest.approx(lam * r["mean_wait"], rel=0.03)


@pytest.mark.slow
def test_tandem_matches_jackson_product_form() -> None:
    """8 x 400 h: the standard error of each mean wait is about 3 %; 10 % is ~3 SE."""
    stations = [(2, 0.8), (3, 1.2), (1, 0.35)]  # rho 0.8, 0.8, 0.7 at lambda 2
    lam, minutes = 2.0, 400 * 60
    runs = [simulate_tandem(stations, lam, minutes, 0.1 * minutes, seed=5, replication=r)
            for r in range(8)]
    theory = jackson_tandem(lam, stations)
    for i, expect in enumerate(theory):
        got = sum(run[i].mean_wait for run in runs) / len(runs)
        assert got == pytest.approx(expect, rel=0.10), (i, got, expect)


def test_overloaded_station_utilisation_stays_below_one() -> None:
    r = simulate_tandem([(2, 1.0)], 3.0, 600, 60, seed=1, replication=0)[0]
    assert 0.97 < r.utilisation <= 1.0 + 1e-9
    assert r.mean_queue > 50  # the queue grows without bound


def test_station_cli_json_contract() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "twin.cli", "twin", "station", "--servers", "2",
         "--arrival-rate", "1.2", "--service-mean", "1", "--hours", "40",
         "--replications", "4", "--seed", "3", "--json"],
        capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    for key in ("mean_wait", "ci_low", "ci_high", "utilisation", "customers",
                "theory_wait", "theory", "theory_within_ci", "erlang_c_wait"):
        assert key in r
    assert r["ci_low"] <= r["mean_wait"] <= r["ci_high"]
    assert r["theory"] == "Erlang C (exact)" and r["theory_wait"] == r["erlang_c_wait"]
    shown = subprocess.run(
        [sys.executable, "-m", "twin.cli", "twin", "station", "--servers", "2",
         "--arrival-rate", "1.2", "--service-mean", "1", "--hours", "40",
         "--replications", "4", "--seed", "3"], capture_output=True, text=True, check=True)
    verdict = " ".join(shown.stdout.split())  # the same runs, said in a sentence
    assert f"simulated mean wait {r['mean_wait']:.3f} min" in verdict
    assert f"Erlang C (exact): {r['theory_wait']:.3f} min, " + (
        "inside" if r["theory_within_ci"] else "outside") + " the interval" in verdict
    assert r["customers"] > 4 * 40 * 60 * 1.2 * 0.7


def priority_waits(servers: int, rates: tuple[float, float], service_mean: float,
                   minutes: float, seed: int) -> tuple[float, float]:
    """Two Poisson classes (0 first) at the model's own priority resource, exponential
    service: mean queue wait of each class after a 20 % warm-up."""
    import numpy as np
    import simpy

    from twin.model.resources import FastResource

    env = simpy.Environment()
    rng = np.random.default_rng(seed)
    res = FastResource(env, servers, priority=True)
    waits: list[list[float]] = [[], []]
    warmup = 0.2 * minutes

    def customer(kind: int):
        t = env.now
        ev = res.acquire(kind)
        if ev is not None:
            yield ev
        if t >= warmup:
            waits[kind].append(env.now - t)
        env.timeout(rng.exponential(service_mean)).callbacks.append(res.release)

    def source(kind: int, rate: float):
        while True:
            yield env.timeout(rng.exponential(1 / rate))
            env.process(customer(kind))

    for kind, rate in enumerate(rates):
        env.process(source(kind, rate))
    env.run(until=minutes)
    return float(np.mean(waits[0])), float(np.mean(waits[1]))


@pytest.mark.slow
@pytest.mark.parametrize(("servers", "rho"), [(1, 0.8), (4, 0.85)])
def test_two_class_priority_matches_cobham(servers: int, rho: float) -> None:
    """Non-preemptive priority M/M/c with equal service rates (Cobham 1954): class k waits
    W_k = C(c, a) / (c mu) / ((1 - s_{k-1}) (1 - s_k)), s_k the load of classes <= k. The
    resource the hospital model's doctors and stations use, not SimPy's."""
    service_mean = 1.0
    lam = rho * servers / service_mean
    rates = (0.4 * lam, 0.6 * lam)
    w0 = erlang_c(servers, lam * service_mean) * service_mean / servers
    s0 = rates[0] * service_mean / servers
    theory = (w0 / (1 - s0), w0 / ((1 - s0) * (1 - rho)))
    got = [priority_waits(servers, rates, service_mean, 200_000, seed) for seed in (1, 2, 3)]
    for k in (0, 1):
        mean = sum(g[k] for g in got) / len(got)
        assert mean == pytest.approx(theory[k], rel=0.08), (k, mean, theory)


def test_a_station_nobody_reaches_reports_no_wait_not_zero() -> None:
    """Five times overloaded for an hour: nobody who arrived after the warm-up reaches
    service, so there is no wait to average (not a wait of zero); the CLI's JSON is strict
    (the unbounded Erlang C wait is null, not ``Infinity``)."""
    r = station_experiment(2, 10.0, 1.0, 1.0, 2, seed=1)
    assert r["customers"] == 0 and r["mean_queue"] > 100
    assert r["mean_wait"] is None and r["ci_low"] is None and r["ci_high"] is None
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "station", "--servers",
                          "2", "--arrival-rate", "10", "--service-mean", "1", "--hours", "1",
                          "--replications", "2", "--json"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert shown["mean_wait"] is None and shown["erlang_c_wait"] is None
    assert shown["theory_wait"] is None and shown["theory_within_ci"] is None
    assert "rho = 5.000" in res.stderr


@pytest.mark.parametrize("name", ["consult_first", "registration_window", "lab_turnaround",
                                  "walk", "checkin_scan"])
def test_a_day_of_arrivals_matches_the_infinite_server_queue(name: str) -> None:
    """The model's own day of arrivals (its hourly profile, thinned) and service times
    (quantiles, lognormal, gamma, triangular, uniform) into servers without limit: the
    number present every ten minutes is Poisson with mean m(t), the arrivals' rate
    integrated against the service's survival (Eick, Massey and Whitt 1993). The mean of
    200 days within 4.5 standard errors everywhere, the variance about the mean."""
    from twin.model.arrivals import rate_function
    from twin.scenario.schema import Day, Times

    day, dist = Day(), getattr(Times(), name)
    at = np.arange(485.0, 1080.0, 10.0)
    reps, daily = 200, 12000
    counts = infinite_server_counts(day.hourly_profile, day.arrivals_from, day.arrivals_until,
                                    daily, dist, at, seed=3, replications=reps)
    rate, _, _ = rate_function(day.hourly_profile, day.arrivals_from, day.arrivals_until,
                               daily)
    m = infinite_server_mean(rate, dist.survival, day.arrivals_from, day.arrivals_until, at)
    z = (counts.mean(axis=0) - m) / np.sqrt(np.maximum(m, 1e-9) / reps)
    assert np.abs(z).max() < 4.5, (name, np.round(z, 2), np.round(m, 1))
    peak = int(np.argmax(m))
    assert 0.75 < counts[:, peak].var(ddof=1) / counts[:, peak].mean() < 1.3
    assert m[0] > 0 and m[-1] < m[peak]  # the day fills and empties
