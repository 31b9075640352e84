"""Examination reports: published by the lab or imaging against the patient's card,
read back by that card only (a report is never shown for another card)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..common.cst import utc_now
from .tables import reports


class Reports:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def publish(self, card_id: str, kind: str, title: str, body: str) -> int:
        with self.engine.begin() as conn:
            key = conn.execute(reports.insert().values(
                card_id=card_id, kind=kind, title=title, body=body,
                published_at=utc_now())).inserted_primary_key
        assert key is not None
        return int(key[0])

    def of_card(self, card_id: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(reports).where(reports.c.card_id == card_id)
                                .order_by(reports.c.id.desc()).limit(limit)).all()
        return [{"report_id": r.id, "kind": r.kind, "title": r.title, "body": r.body,
                 "published_at": r.published_at.isoformat()} for r in rows]
