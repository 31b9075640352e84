"""A lean multi-server resource for the hospital model.

SimPy's ``Resource`` turns every request and every release into events of their own
(plus sorting for ``PriorityResource``). Here a free server is taken at once without an
event, a release hands the server straight to the next in line, and only a patient who
actually waits gets an event to wait on: FIFO within a priority class, lower number
first. ``queue`` and ``count`` read as on SimPy's resources (the monitor uses them)."""

from __future__ import annotations

import heapq
from collections import deque
from itertools import count

import simpy

from services.rules.calling import KINDS, WALK_IN, after_call, next_to_call


class FastResource:
    def __init__(self, env: simpy.Environment, capacity: int, priority: bool = False) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.env = env
        self.capacity = capacity
        self.count = 0  # servers in use
        self.priority = priority
        self._fifo: deque[simpy.Event] = deque()
        self._heap: list[tuple[int, int, simpy.Event]] = []
        self._seq = count()

    @property
    def queue(self) -> list:
        return list(self._fifo) if not self.priority else [e for _, _, e in self._heap]

    def __len__(self) -> int:
        return len(self._heap) if self.priority else len(self._fifo)

    def acquire(self, priority: int = 1) -> simpy.Event | None:
        """None when a server was free and is now held; else an event to wait on, which
        succeeds when a server is handed over."""
        if self.count < self.capacity and not (self._heap or self._fifo):
            self.count += 1
            return None
        ev = self.env.event()
        if self.priority:
            heapq.heappush(self._heap, (priority, next(self._seq), ev))
        else:
            self._fifo.append(ev)
        return ev

    def release(self, _event: object = None) -> None:
        """Free a server: the next in line gets it at this instant (unless the server
        goes off shift: more are busy than are now open)."""
        if self.count > self.capacity or not self._hand_over():
            self.count -= 1

    def _hand_over(self) -> bool:
        """Give a server to the next in line, if anyone waits."""
        if self.priority and self._heap:
            heapq.heappop(self._heap)[2].succeed()
        elif not self.priority and self._fifo:
            self._fifo.popleft().succeed()
        else:
            return False
        return True

    def set_capacity(self, capacity: int) -> None:
        """A shift change: servers opened take the waiting at once; a server closed
        finishes its patient and calls no next one."""
        self.capacity = capacity
        while self.count < self.capacity and self._hand_over():
            self.count += 1


class CallingQueue(FastResource):
    """A department's doctors: a free doctor calls the next patient by the outpatient
    calling rule (``services.rules.calling``: revisits, then appointment holders at their
    time interleaved with walk-ins). ``acquire(kind)`` takes the patient's kind."""

    def __init__(self, env: simpy.Environment, capacity: int, holders_per_walk_in: int) -> None:
        super().__init__(env, capacity, priority=False)
        self.holders_per_walk_in = holders_per_walk_in
        self._queues: tuple[deque[simpy.Event], ...] = tuple(deque() for _ in KINDS)
        self._holders_in_a_row = 0

    @property
    def queue(self) -> list:
        return [e for q in self._queues for e in q]

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues)

    def acquire(self, priority: int = WALK_IN) -> simpy.Event | None:
        if self.count < self.capacity and not len(self):
            self.count += 1
            self._holders_in_a_row = after_call(priority, self._holders_in_a_row)
            return None
        ev = self.env.event()
        self._queues[priority].append(ev)
        return ev

    def _hand_over(self) -> bool:
        waiting = (len(self._queues[0]), len(self._queues[1]), len(self._queues[2]))
        kind = next_to_call(waiting, self._holders_in_a_row, self.holders_per_walk_in)
        if kind is None:
            return False
        self._holders_in_a_row = after_call(kind, self._holders_in_a_row)
        self._queues[kind].popleft().succeed()
        return True


class FifoLine:
    """A first-come, first-served station whose waits are computed, not simulated.

    With every customer served in arrival order, the k-th one starts at the first moment,
    at or after both their arrival and the previous customer's start, when fewer of the
    customers already placed are still in service than servers are open (Lindley's
    recursion, with the shift schedule's capacity at that moment). The model calls
    ``assign`` in time order (SimPy's clock), so the starts, and so every wait, are those
    ``FastResource`` would give, without its two events per use (the release at the end
    of the service and the wake-up of a waiting customer). A shift that closes servers
    lets those busy finish and hands them no one; one that opens them serves the waiting
    at once, as on ``FastResource``."""

    def __init__(self, env: simpy.Environment, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.env = env
        self.capacity = capacity
        self._changes: list[tuple[float, int]] = []  # (time, servers open from then)
        self._ends: list[float] = []  # service ends of those placed and maybe still in
        self._starts: list[float] = []  # starts of those who wait (the queue's length)
        self._last_start = float("-inf")

    def set_schedule(self, changes: list[tuple[float, int]]) -> None:
        """The shift schedule, in time order: (time, servers open from then)."""
        self._changes = sorted(changes)

    def _open_at(self, t: float) -> tuple[int, float]:
        """(servers open at ``t``, the next change after ``t``)."""
        servers, nxt = self.capacity, float("inf")
        for at, n in self._changes:
            if at <= t:
                servers = n
            else:
                nxt = at
                break
        return servers, nxt

    def assign(self, arrival: float, service: float) -> float:
        """The start of service of a customer arriving now; places them."""
        t = arrival if arrival > self._last_start else self._last_start
        ends = self._ends
        while True:
            while ends and ends[0] <= t:
                heapq.heappop(ends)
            servers, change = self._open_at(t) if self._changes else (self.capacity,
                                                                       float("inf"))
            if len(ends) < servers:
                break
            t = min(ends[0] if ends else float("inf"), change)
            if t == float("inf"):  # never served: the day runs away (RunawayDay)
                break
        heapq.heappush(ends, t + service)
        self._last_start = t
        if t > arrival:
            heapq.heappush(self._starts, t)
        return t

    def __len__(self) -> int:
        """Customers waiting now."""
        starts, now = self._starts, self.env.now
        while starts and starts[0] <= now:
            heapq.heappop(starts)
        return len(starts)
