"""What each card system pulls by cursor (``sync_cursors``), records and cursor written
in one transaction, so that each arrives exactly once and in the source's order however
often a pull is retried or interrupted, and a side that was down resumes from its cursor:

- usage records shared both ways (用卡记录共享): each side pulls the other's records of
  bound cards;
- deaths registered by civil affairs (the registry's feed): each side cancels the
  person's card."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ..db import serial_id
from ..peer import PeerClient

SHARED_FIELDS = ("ehc_card_id", "ssc_card_no", "institution_code", "terminal_id",
                 "terminal_type", "step", "code_kind", "at")


def scan_columns() -> list[sa.Column]:
    """Where and how a card was used: institution, terminal and its type, step, code."""
    return [sa.Column("institution_code", sa.String(12), nullable=False),
            sa.Column("terminal_id", sa.String(16), nullable=False),
            sa.Column("terminal_type", sa.SmallInteger, nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("code_kind", sa.String(10), nullable=False)]


def shared_usage_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    shared = sa.Table(
        "shared_usage", metadata,
        serial_id(),
        sa.Column("source", sa.String(4), nullable=False),
        sa.Column("source_id", sa.BigInteger, nullable=False),
        sa.Column("ehc_card_id", sa.String(64), nullable=False),
        sa.Column("ssc_card_no", sa.String(20), nullable=False),
        *scan_columns(),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("source", "source_id", name="uq_shared_source"),
    )
    cursors = sa.Table(
        "sync_cursors", metadata,
        sa.Column("source", sa.String(4), primary_key=True),
        sa.Column("last_id", sa.BigInteger, nullable=False),
    )
    return shared, cursors


Fetch = Callable[[int, int], Awaitable[list[dict[str, Any]]]]


class UsageInbox:
    def __init__(self, engine: sa.Engine, shared: sa.Table, cursors: sa.Table, source: str) -> None:
        self.engine = engine
        self.shared = shared
        self.cursors = cursors
        self.source = source

    def cursor(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(self.cursors.c.last_id)
                                 .where(self.cursors.c.source == self.source)).scalar()
        return int(value or 0)

    async def pull(self, fetch: Fetch, page: int = 500) -> int:
        """Pull every page the peer has after our cursor; the number of new records."""
        received = 0
        while True:  # the store's reads and writes in a thread, off the event loop
            after = await asyncio.to_thread(self.cursor)
            records = await fetch(after, page)
            if not records:
                return received
            received += await asyncio.to_thread(self._store, after, records)
            if len(records) < page:
                return received

    def _store(self, after: int, records: list[dict[str, Any]]) -> int:
        now = datetime.now(UTC).replace(tzinfo=None)
        t, c = self.shared, self.cursors
        ids = [int(r["id"]) for r in records]
        with self.engine.begin() as conn:
            # the cursor row is the lock: a concurrent pull of the same page waits here
            moved = conn.execute(c.update().where(c.c.source == self.source,
                                                  c.c.last_id == after)
                                 .values(last_id=max(ids))).rowcount
            if not moved:
                if after != 0 or conn.execute(sa.select(c.c.last_id).where(
                        c.c.source == self.source)).first() is not None:
                    return 0  # someone else stored this page first
                conn.execute(c.insert().values(source=self.source, last_id=max(ids)))
            seen = set(conn.execute(sa.select(t.c.source_id).where(
                t.c.source == self.source, t.c.source_id.in_(ids))).scalars())
            fresh = [{"source": self.source, "source_id": int(r["id"]), "received_at": now,
                      **{k: r[k] for k in SHARED_FIELDS}}
                     for r in records if int(r["id"]) not in seen]
            if fresh:
                conn.execute(t.insert(), fresh)
        return len(fresh)


def card_history(conn, source: str, own: sa.Table, own_key, shared: sa.Table, shared_key,
                 value: str, limit: int) -> list[dict[str, Any]]:
    """One card's usage records from both systems, newest first: this system's own
    (``own_key == value``) and those shared by the peer (``shared_key == value``)."""
    mine = conn.execute(sa.select(own).where(own_key == value)
                        .order_by(own.c.id.desc()).limit(limit)).all()
    theirs = conn.execute(sa.select(shared).where(shared_key == value)
                          .order_by(shared.c.id.desc()).limit(limit)).all()
    out = [{"source": source, "source_id": r.id, "institution_code": r.institution_code,
            "terminal_id": r.terminal_id, "step": r.step, "code_kind": r.code_kind,
            "at": r.verified_at.isoformat()} for r in mine]
    out += [{"source": r.source, "source_id": r.source_id,
             "institution_code": r.institution_code, "terminal_id": r.terminal_id,
             "step": r.step, "code_kind": r.code_kind, "at": r.at} for r in theirs]
    return sorted(out, key=lambda r: r["at"], reverse=True)[:limit]


DEATHS = "dead"  # the registry's death feed in sync_cursors


class CivilAffairs(PeerClient):
    """The registry's feed of registered deaths."""

    name = "registry"

    async def deaths(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return await self.get("/registry/v1/deaths", {"after_id": after_id, "limit": limit})


Cancel = Callable[[Any, str, str], int]  # (connection, id_type, id_number) -> cards cancelled


def _ensure_cursor(engine: sa.Engine, cursors: sa.Table) -> None:
    """The deaths cursor's row, once (a worker that loses the race finds it made)."""
    try:
        with engine.begin() as conn:
            conn.execute(cursors.insert().values(source=DEATHS, last_id=0))
    except sa.exc.IntegrityError:
        pass


def _cursor_of(engine: sa.Engine, cursors: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(cursors.c.last_id).where(
            cursors.c.source == DEATHS)).scalar_one())


def _apply_deaths_page(engine: sa.Engine, cursors: sa.Table, after: int,
                       deaths: list[dict[str, Any]], cancel: Cancel) -> int | None:
    """One page and the cursor in one transaction: the cards cancelled, or None when
    another worker moved the cursor first."""
    with engine.begin() as conn:
        moved = conn.execute(cursors.update().where(
            cursors.c.source == DEATHS, cursors.c.last_id == after)
            .values(last_id=deaths[-1]["id"])).rowcount
        if not moved:
            return None
        return sum(cancel(conn, d["id_type"], d["id_number"]) for d in deaths)


async def apply_deaths(engine: sa.Engine, cursors: sa.Table, civil: CivilAffairs,
                       cancel: Cancel, page: int = 500) -> int:
    """Cancel the cards of every death registered after our cursor (each page and the
    cursor in one transaction); the number of cards cancelled."""
    await asyncio.to_thread(_ensure_cursor, engine, cursors)
    cancelled = 0
    while True:  # the store's reads and writes in a thread, off the event loop
        after = await asyncio.to_thread(_cursor_of, engine, cursors)
        deaths = await civil.deaths(after, page)
        if not deaths:
            return cancelled
        applied = await asyncio.to_thread(_apply_deaths_page, engine, cursors, after, deaths,
                                          cancel)
        if applied is None:
            continue  # another worker applied this page: read the cursor again
        cancelled += applied
        if len(deaths) < page:
            return cancelled
