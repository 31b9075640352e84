"""Quantities with units in scenario files: ``"10 min"``, ``"1.5 h"``, ``"45 s"``,
``"12000 /day"``, ``"30 /h"``, ``"30 %"``. Everything becomes minutes (time), per-minute
(rates) or a fraction."""

from __future__ import annotations

import re

TIME_UNITS = {"s": 1 / 60, "sec": 1 / 60, "min": 1.0, "h": 60.0, "hour": 60.0}
RATE_UNITS = {"/min": 1.0, "/h": 1 / 60, "/hour": 1 / 60, "/day": 1 / 1440}
_Q = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*([a-zA-Z/%]+)\s*$")


class UnitError(ValueError):
    pass


def _split(text: object, what: str) -> tuple[float, str]:
    if isinstance(text, bool) or not isinstance(text, str):
        raise UnitError(f"{what} needs a unit, e.g. '10 min' (got {text!r})")
    m = _Q.match(text)
    if not m:
        raise UnitError(f"{what}: cannot read {text!r} as '<number> <unit>'")
    return float(m.group(1)), m.group(2)


def minutes(text: object) -> float:
    """A duration in minutes; units s, min, h."""
    value, unit = _split(text, "a duration")
    if unit not in TIME_UNITS:
        raise UnitError(f"unknown time unit {unit!r} in {text!r} (use s, min or h)")
    return value * TIME_UNITS[unit]


def fraction(value: object) -> float:
    """A share: a number in [0, 1] or ``"30 %"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    v, unit = _split(value, "a share")
    if unit != "%":
        raise UnitError(f"a share is a number in [0, 1] or 'N %' (got {value!r})")
    return v / 100
