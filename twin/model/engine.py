"""SimPy, lean where a day's run spends its time.

A month of the province is about a hundred million SimPy events, and a month of the
roll-out path is one of 37. Two things SimPy does per event the day does not need:
``Environment.run`` steps each event through ``step()`` (a method call and its lookups),
and a new ``Process`` waits for an ``Initialize`` event of its own before its generator
takes a step. ``DayEnvironment.run_until_triggered`` is SimPy's loop inline (the same
heap, the same order, a failed event raised the same way; ``StopSimulation`` is not
used), and ``Visit`` is a process whose generator takes its first step at once, inside
its caller. Everything else is SimPy's."""

from __future__ import annotations

from heapq import heappop
from typing import Any

import simpy
from simpy.events import ProcessGenerator


class DayEnvironment(simpy.Environment):
    def run_until_triggered(self, *stops: simpy.Event) -> None:
        """Process events until one of ``stops`` has been processed, as
        ``run(until=any_of(stops))`` would, or none is left."""
        queue = self._queue
        stopped = False

        def stop(_event: simpy.Event) -> None:
            nonlocal stopped
            stopped = True

        for ev in stops:
            if ev.callbacks is None:  # processed already
                return
            ev.callbacks.append(stop)
        while not stopped and queue:
            self._now, _, _, event = heappop(queue)
            callbacks: Any = event.callbacks
            event.callbacks = None  # type: ignore[assignment]  # processed, as SimPy marks it
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                exc = type(event._value)(*event._value.args)
                exc.__cause__ = event._value
                raise exc


class _Started:
    """What a process's first step is resumed with (SimPy sends ``None`` at its
    ``Initialize`` event)."""

    _ok = True
    _value = None


class Visit(simpy.Process):
    """A SimPy process started now, in its caller: the generator runs to its first
    ``yield`` before the constructor returns (a patient the source lets in walks off at
    that instant either way, one event sooner). The rest is ``simpy.Process``."""

    def __init__(self, env: simpy.Environment, generator: ProcessGenerator) -> None:
        self.env = env
        self.callbacks = []
        self._generator = generator
        active = env.active_process
        self._resume(_Started)  # type: ignore[arg-type]
        env._active_proc = active  # the caller is still the one running
