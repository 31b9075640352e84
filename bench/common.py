"""Helpers of the benchmarks: timing loops and where results go."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path("results/bench")


def ops_per_second(fn: Callable[[], object], min_seconds: float = 1.0) -> float:
    """Calls of ``fn`` per second over at least ``min_seconds`` (after one warm-up call)."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(10):
            fn()
        n += 10
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n / elapsed


def cpu_seconds(pid: int) -> float:
    """CPU time a process has spent: its live threads' run time as the scheduler counts
    it (``/proc/PID/task/*/schedstat``, nanoseconds), else ``/proc/PID/stat``'s user and
    system time, which come in clock ticks (10 ms: 50 us a call over 200 calls). A thread
    that ends between two readings takes its time with it: the servers measured here
    keep theirs (the event loop, the writer thread, the thread pool)."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (FileNotFoundError, ValueError, IndexError):  # a thread gone, or no schedstat
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def save(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {"machine": {"python": platform.python_version(), "cpu": platform.processor(),
                        "system": platform.platform()},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path
