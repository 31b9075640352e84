"""Quantities with units in scenario files, as people write them: ``"10 min"``,
``"30 minutes"``, ``"1 minute"``, ``"1.5 h"``, ``"2 hours"``, ``"45 s"``,
``"12000 /day"``, ``"30 per hour"``, ``"30 %"``, ``"30%"``. Everything becomes minutes
(time), per-minute (rates), a count a day, or a fraction."""

from __future__ import annotations

import math
import re

_SECONDS = ("s", "sec", "secs", "second", "seconds")
_MINUTES = ("min", "mins", "minute", "minutes")
_HOURS = ("h", "hr", "hrs", "hour", "hours")
TIME_UNITS = {**dict.fromkeys(_SECONDS, 1 / 60), **dict.fromkeys(_MINUTES, 1.0),
              **dict.fromkeys(_HOURS, 60.0)}
RATE_UNITS = {**{f"/{u}": 1.0 for u in _MINUTES}, **{f"/{u}": 1 / 60 for u in _HOURS},
              "/day": 1 / 1440, "/d": 1 / 1440}
_Q = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*"
                r"((?:/|per\s+)?\s*[a-zA-Z%]+)\s*$")


class UnitError(ValueError):
    pass


def _split(text: object, what: str) -> tuple[float, str]:
    if isinstance(text, bool) or not isinstance(text, str):
        raise UnitError(f"{what} needs a unit, e.g. '10 min' (got {text!r})")
    m = _Q.match(text)
    if not m:
        raise UnitError(f"{what}: cannot read {text!r} as '<number> <unit>'")
    unit = re.sub(r"^per\s+", "/", m.group(2)).replace(" ", "").lower()
    value = float(m.group(1))
    if not math.isfinite(value):  # '1e400 min' reads as infinity
        raise UnitError(f"{what}: {text!r} is too large a number")
    return value, unit


def minutes(text: object) -> float:
    """A duration in minutes; units s, min, h."""
    value, unit = _split(text, "a duration")
    if unit not in TIME_UNITS:
        raise UnitError(f"unknown time unit {unit!r} in {text!r} (use s, min or h, or "
                        "seconds, minutes, hours)")
    return value * TIME_UNITS[unit]


def fraction(value: object) -> float:
    """A share: a number in [0, 1] or ``"30 %"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    v, unit = _split(value, "a share")
    if unit != "%":
        raise UnitError(f"a share is a number in [0, 1] or 'N %' (got {value!r})")
    return v / 100


def per_day(value: object) -> int:
    """A count a day: a whole number, or ``"12000 /day"`` (``/h`` over 24 h is refused:
    a day's count is what is meant)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    v, unit = _split(value, "a count a day")
    if RATE_UNITS.get(unit) != RATE_UNITS["/day"] or v != int(v):
        raise UnitError(f"a count a day is a whole number or 'N /day' (got {value!r})")
    return int(v)
