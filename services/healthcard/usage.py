"""Usage records of the EHC side: an institution's own, a card's history from both card
systems, the bound cards' records the e-SSC side pulls, and the day's audit chains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, and_, select

from ..common.cards.audit import day_report
from ..common.cards.feeds import card_history
from ..common.cards.seals import Sealed
from .tables import audit_heads, bindings, shared_usage, usage_records

# a binding's answer is stable data; the settle time keeps a late-committing record
# (PostgreSQL assigns IDs before commit) from being skipped by a cursor that passed it
SHARE_SETTLE_S = 1.0


def institution_records(engine: Engine, institution_code: str, after_id: int,
                        limit: int) -> list[dict]:
    """This institution's usage records (and only its own) after a cursor."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(usage_records)
            .where(usage_records.c.institution_code == institution_code,
                   usage_records.c.id > after_id)
            .order_by(usage_records.c.id).limit(limit)).all()
    return [{**r._asdict(), "verified_at": r.verified_at.isoformat()} for r in rows]


def card_records(engine: Engine, card_id: str, limit: int) -> list[dict]:
    """A card's usage records from both card systems, newest first."""
    with engine.connect() as conn:
        return card_history(conn, "ehc", usage_records, usage_records.c.card_id,
                            shared_usage, shared_usage.c.ehc_card_id, card_id, limit)


def bound_records(engine: Engine, after_id: int, limit: int) -> list[dict]:
    """Usage records of bound cards after a cursor (what the e-SSC side pulls)."""
    settled = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=SHARE_SETTLE_S)
    u = usage_records
    with engine.connect() as conn:
        rows = conn.execute(
            select(u, bindings.c.ssc_card_no)
            .join(bindings, and_(bindings.c.ehc_card_id == u.c.card_id,
                                 bindings.c.state == "bound"))
            .where(u.c.id > after_id, u.c.verified_at <= settled)
            .order_by(u.c.id).limit(limit)).all()
    return [{"id": r.id, "ehc_card_id": r.card_id, "ssc_card_no": r.ssc_card_no,
             "institution_code": r.institution_code, "terminal_id": r.terminal_id,
             "terminal_type": r.terminal_type, "step": r.step,
             "code_kind": r.code_kind, "at": r.verified_at.isoformat()} for r in rows]


def shared_found(engine: Engine, source: str, source_ids: list[int]) -> list[int]:
    """Which of the peer's usage records (by their IDs there) arrived here, sorted."""
    with engine.connect() as conn:
        found = conn.execute(select(shared_usage.c.source_id).where(
            shared_usage.c.source == source,
            shared_usage.c.source_id.in_(source_ids))).scalars().all()
    return sorted(found)


def audit_day(engine: Engine, day: str, key: bytes, sealed: Sealed) -> dict:
    """The day's (``YYYYMMDD``) chains of usage records, per institution, verified
    against their key and their seals."""
    return day_report(engine, audit_heads, {
        "usage": (usage_records, lambda r: r.institution_code)}, day, key, sealed)
