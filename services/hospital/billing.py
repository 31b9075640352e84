"""A visit's fees and their hand-off to settlement.

The doctor's and the departments' systems charge items to a card (``charge``). When the
patient pays, the hospital's payment terminal asks for a bill: it gathers every fee of
the card not yet billed. The terminal uploads the bill's items to the e-SSC settlement
with the bill's ID as the idempotency key, settles, and reports the bill paid with the
settlement's ID (or paid by the phone's wallet, or at a window). Rules:
- one open bill per card: asked again before it is paid, the same bill comes back with
  the same items (a retry after a lost answer never bills twice; fees charged meanwhile
  wait for the next bill);
- nothing to bill is ``NOTHING_TO_BILL``; a bill of another card is ``BILL_NOT_FOUND``;
- a paid bill stays paid: reported again the same way it is the same answer, another
  way (another settlement) is ``BILL_ALREADY_PAID``.
"""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa

from ..common.cst import utc_now
from ..common.errors import Conflict, Invalid, NotFound
from .tables import bills, fees


class Billing:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def charge(self, card_id: str, session_id: int | None, items: list[dict]) -> list[int]:
        with self.engine.begin() as conn:
            now = utc_now()
            keys = [conn.execute(fees.insert().values(
                card_id=card_id, session_id=session_id, code=i["code"],
                category=i["category"], amount_fen=i["amount_fen"], created_at=now))
                .inserted_primary_key for i in items]
        return [int(k[0]) for k in keys if k]

    def bill(self, card_id: str) -> tuple[dict[str, Any], bool]:
        """The card's open bill, or a new one of its unbilled fees; (bill, made now)."""
        open_bill = self._open(card_id)
        if open_bill is not None:
            return open_bill, False
        bill_id = secrets.token_hex(12)
        try:
            with self.engine.begin() as conn:
                now = utc_now()
                conn.execute(bills.insert().values(
                    bill_id=bill_id, card_id=card_id, state="open", open_card=card_id,
                    amount_fen=0, created_at=now, updated_at=now))
                taken = conn.execute(fees.update().where(
                    fees.c.card_id == card_id, fees.c.bill_id.is_(None))
                    .values(bill_id=bill_id)).rowcount
                if not taken:
                    raise Conflict("NOTHING_TO_BILL", "no fee of this card waits for a bill")
                total = conn.execute(sa.select(sa.func.sum(fees.c.amount_fen)).where(
                    fees.c.bill_id == bill_id)).scalar_one()
                conn.execute(bills.update().where(bills.c.bill_id == bill_id)
                             .values(amount_fen=int(total)))
        except sa.exc.IntegrityError:  # billed at the same moment by another call
            again = self._open(card_id)
            if again is None:
                raise
            return again, False
        bill = self._open(card_id)
        assert bill is not None
        return bill, True

    def _open(self, card_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(bills).where(bills.c.open_card == card_id)).first()
            return None if row is None else self._view(conn, row)

    @staticmethod
    def _view(conn, row: Any) -> dict[str, Any]:
        items = conn.execute(sa.select(fees.c.code, fees.c.category, fees.c.amount_fen)
                             .where(fees.c.bill_id == row.bill_id).order_by(fees.c.id)).all()
        return {"bill_id": row.bill_id, "card_id": row.card_id, "state": row.state,
                "amount_fen": int(row.amount_fen), "paid_by": row.paid_by,
                "settlement_id": row.settlement_id,
                "items": [{"code": i.code, "category": i.category,
                           "amount_fen": int(i.amount_fen)} for i in items]}

    def paid(self, bill_id: str, card_id: str, paid_by: str,
             settlement_id: str | None) -> dict[str, Any]:
        if (paid_by == "essc") != (settlement_id is not None):
            raise Invalid("INVALID_REQUEST", "a settlement ID goes with paid_by 'essc' only")
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(bills).where(
                bills.c.bill_id == bill_id, bills.c.card_id == card_id)
                .with_for_update()).first()
            if row is None:
                raise NotFound("BILL_NOT_FOUND", "no such bill for this card")
            if row.state == "paid":
                if (row.paid_by, row.settlement_id) != (paid_by, settlement_id):
                    raise Conflict("BILL_ALREADY_PAID", f"paid by {row.paid_by} already")
                return self._view(conn, row)
            conn.execute(bills.update().where(bills.c.bill_id == bill_id).values(
                state="paid", open_card=None, paid_by=paid_by, settlement_id=settlement_id,
                updated_at=utc_now()))
            return self._view(conn, conn.execute(sa.select(bills).where(
                bills.c.bill_id == bill_id)).one())

    def of_card(self, card_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(bills).where(bills.c.card_id == card_id)
                                .order_by(bills.c.created_at, bills.c.bill_id)).all()
            return [self._view(conn, r) for r in rows]
