"""Helpers of the benchmarks: timing loops and where results go."""

from __future__ import annotations

import json
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


def save(name: str, data: dict) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    data = {"machine": {"python": platform.python_version(), "cpu": platform.processor(),
                        "system": platform.platform()},
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"), **data}
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return path
