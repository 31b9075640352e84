"""Time: China Standard Time, in which terminals and codes state their times, and the
naive UTC the stores keep (one form on SQLite and PostgreSQL alike)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from .errors import BadRequest, Invalid

CST = timezone(timedelta(hours=8), "CST")


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def digits(moment: datetime) -> str:
    """``YYYYMMDDHHMMSS`` of ``moment`` in its own zone: ``strftime``'s trip through the C
    library costs several times this on the hot path (and %-formatting half an f-string's)."""
    return "%04d%02d%02d%02d%02d%02d" % (  # noqa: UP031
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def read_cst_time(digits: str) -> datetime | None:
    """``YYYYMMDDHHMMSS`` (China Standard Time) or None; sliced by hand, strptime is slow."""
    if len(digits) != 14 or not (digits.isascii() and digits.isdigit()):
        return None
    try:
        return datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]),
                        int(digits[10:12]), int(digits[12:14]), tzinfo=CST)
    except ValueError:
        return None


def cst_day_span(day: date) -> tuple[datetime, datetime]:
    """A China Standard Time calendar day as the naive UTC interval [start, end) the
    stores' timestamps are compared with (16:00 UTC the day before to 16:00 UTC)."""
    start = datetime(day.year, day.month, day.day, tzinfo=CST).astimezone(UTC)
    return start.replace(tzinfo=None), (start + timedelta(days=1)).replace(tzinfo=None)


def cst_date(stored: datetime) -> date:
    """The China Standard Time day of a store's naive UTC timestamp."""
    return stored.replace(tzinfo=UTC).astimezone(CST).date()


def cst_today() -> date:
    return datetime.now(CST).date()


def cst_day() -> str:
    """Today in China Standard Time, ``YYYYMMDD`` (the day audit chains are kept by)."""
    return digits(datetime.now(CST))[:8]


def refuse_clock_skew(terminal_time: str, now: datetime, skew_s: int) -> None:
    """422 for a malformed terminal time, 400 CLOCK_SKEW beyond the tolerance."""
    parsed = read_cst_time(terminal_time)
    if parsed is None:
        raise Invalid("INVALID_REQUEST", "time: YYYYMMDDHHMMSS (China Standard Time)")
    if abs(parsed - now) > timedelta(seconds=skew_s):
        raise BadRequest("CLOCK_SKEW", f"terminal clock is off by more than {skew_s}s")
