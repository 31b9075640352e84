"""The time the stores keep: naive UTC (one form on SQLite and PostgreSQL alike)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)
