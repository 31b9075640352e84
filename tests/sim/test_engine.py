"""The day's lean SimPy loop and process start behave as SimPy's own: the same events in
the same order at the same times, a failure raised, a process waited on told."""

from __future__ import annotations

import pytest
import simpy

from twin.model.engine import DayEnvironment, Visit


def _trace(env: simpy.Environment, start: type | None) -> list[tuple[float, str]]:
    """Three customers on one server, each arriving, waiting and leaving, traced."""
    log: list[tuple[float, str]] = []
    server = simpy.Resource(env, 1)

    def customer(name: str, service: float):
        log.append((env.now, f"{name} in"))
        with server.request() as req:
            yield req
            log.append((env.now, f"{name} served"))
            yield env.timeout(service)
        log.append((env.now, f"{name} out"))

    def source():
        for k, (gap, service) in enumerate([(0.0, 3.0), (1.0, 2.0), (0.5, 4.0)]):
            yield env.timeout(gap)
            gen = customer(f"c{k}", service)
            env.process(gen) if start is None else start(env, gen)

    env.process(source())
    return log


def test_lean_loop_and_start_give_simpys_own_trace() -> None:
    plain = simpy.Environment()
    expected = _trace(plain, None)
    plain.run()
    lean = DayEnvironment()
    got = _trace(lean, Visit)
    lean.run_until_triggered(lean.timeout(100.0))
    assert got == expected
    assert expected[-1] == (9.0, "c2 out")


def test_the_loop_stops_at_the_first_stop_processed() -> None:
    env = DayEnvironment()
    seen: list[float] = []

    def ticker():
        while True:
            seen.append(env.now)
            yield env.timeout(1.0)

    env.process(ticker())
    env.run_until_triggered(env.timeout(3.5), env.timeout(10.0))
    assert env.now == 3.5 and seen == [0.0, 1.0, 2.0, 3.0]


def test_a_failed_event_is_raised_and_a_waiting_process_is_told() -> None:
    env = DayEnvironment()

    def failing():
        yield env.timeout(1.0)
        raise ValueError("the patient fell")

    Visit(env, failing())
    with pytest.raises(ValueError, match="the patient fell"):
        env.run_until_triggered(env.timeout(5.0))

    env = DayEnvironment()
    done: list[object] = []

    def short():
        yield env.timeout(2.0)
        return "left"

    def waiter():
        done.append((yield Visit(env, short())))

    env.process(waiter())
    env.run_until_triggered(env.timeout(5.0))
    assert done == ["left"]
