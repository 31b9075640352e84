"""Usage records of the e-SSC side: a card's history from both card systems, the bound
cards' records the EHC side pulls, the day's audit chains and the operators' counts."""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from ..common.cards.audit import day_report
from ..common.cards.feeds import card_history
from ..common.cards.seals import Sealed
from .tables import audit_heads, bindings, insured, ledger, shared_usage, usage_records


def card_records(engine: Engine, ssc_card_no: str, limit: int) -> list[dict]:
    """A card's usage records from both card systems, newest first."""
    with engine.connect() as conn:
        return card_history(conn, "essc", usage_records, usage_records.c.ssc_card_no,
                            shared_usage, shared_usage.c.ssc_card_no, ssc_card_no, limit)


def bound_records(engine: Engine, after_id: int, limit: int) -> list[dict]:
    """Usage records of bound e-SSC cards after a cursor (what the EHC side pulls)."""
    u = usage_records
    with engine.connect() as conn:
        rows = conn.execute(
            select(u, bindings.c.ehc_card_id)
            .join(bindings, (bindings.c.ssc_card_no == u.c.ssc_card_no)
                  & (bindings.c.state == "bound"))
            .where(u.c.id > after_id).order_by(u.c.id).limit(limit)).all()
    return [{"id": r.id, "ehc_card_id": r.ehc_card_id, "ssc_card_no": r.ssc_card_no,
             "institution_code": r.institution_code, "terminal_id": r.terminal_id,
             "terminal_type": r.terminal_type, "step": r.step,
             "code_kind": r.code_kind, "at": r.verified_at.isoformat()} for r in rows]


def audit_day(engine: Engine, day: str, key: bytes, sealed: Sealed) -> dict:
    """The day's (``YYYYMMDD``) chains of usage records and ledger postings, verified
    against their key and their seals."""
    return day_report(engine, audit_heads, {
        "usage": (usage_records, lambda r: r.institution_code),
        "ledger": (ledger, lambda r: r.settlement_id[:12])}, day, key, sealed)


def stats(engine: Engine) -> dict:
    """Insured persons by card state and by region; bindings by state."""
    with engine.connect() as conn:
        by_state = conn.execute(select(insured.c.card_state, func.count())
                                .group_by(insured.c.card_state)).all()
        by_binding = conn.execute(select(bindings.c.state, func.count())
                                  .group_by(bindings.c.state)).all()
        by_region = conn.execute(select(insured.c.region, func.count())
                                 .group_by(insured.c.region)).all()
    return {"cards_by_state": {str(s): int(n) for s, n in by_state},
            "bindings_by_state": {s: int(n) for s, n in by_binding},
            "insured_by_region": {r: int(n) for r, n in by_region}}
