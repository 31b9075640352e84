"""Named random streams: one numpy Generator per (seed, replication, hospital, activity),
so that adding an activity never shifts another's numbers, and two flows that draw the
same names see the same numbers (common random numbers)."""

from __future__ import annotations

import hashlib

import numpy as np


def stable_hash(name: str) -> int:
    """A 32-bit hash that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


class Streams:
    def __init__(self, seed: int, replication: int, hospital: int = 0) -> None:
        self.key = (seed, replication, hospital)
        self._cache: dict[str, np.random.Generator] = {}

    def __call__(self, name: str) -> np.random.Generator:
        if name not in self._cache:
            seq = np.random.SeedSequence([*self.key, stable_hash(name)])
            self._cache[name] = np.random.default_rng(seq)
        return self._cache[name]
