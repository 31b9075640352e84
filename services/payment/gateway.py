"""The aggregated payment platform (聚合支付): it takes the cash part of a settlement for
a hospital through a channel (WeChat Pay, Alipay, UnionPay), answers success, failure or
nothing useful, notifies the merchant asynchronously when a pending payment ends, and
answers queries. Its behaviour is set by operators, so that tests and drills can make it
fail, time out, or answer "unknown" and succeed later."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..common.cst import cst_day_span, utc_now
from ..common.errors import Conflict, Invalid, NotFound
from .tables import payments

# our code table of the aggregated channels (documented in the README)
CHANNELS = {"WECHAT": "WeChat Pay", "ALIPAY": "Alipay", "UNIONPAY": "UnionPay QuickPass"}
Mode = Literal["success", "fail", "refuse", "unknown", "timeout", "late_success"]


class Behaviour(BaseModel):
    """How the gateway answers new payments (an outage drill or a fault test)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    mode: Mode = Field("success", description=(
        "success / fail: answered at once; refuse: the channel declines the order "
        "outright (422 PAYMENT_REFUSED, nothing charged); timeout: charges, then holds "
        "the answer for delay_ms (the caller gives up not knowing); unknown: answered "
        "'pending' and ends failed after resolve_after_ms (the payer never confirmed); "
        "late_success: answered "
        "'pending' and ends paid after resolve_after_ms"))
    delay_ms: int = Field(0, ge=0, le=120_000)
    resolve_after_ms: int = Field(1000, ge=0, le=3_600_000)



@dataclass
class Gateway:
    engine: Engine
    behaviour: Behaviour

    def view(self, row: Any) -> dict[str, Any]:
        return {"order_id": row.order_id, "merchant": row.merchant, "channel": row.channel,
                "amount_fen": row.amount_fen, "status": row.status,
                "trade_no": row.trade_no, "created_at": row.created_at.isoformat()}

    def get(self, order_id: str) -> Any:
        self.resolve_due(order_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(payments).where(payments.c.order_id == order_id)).first()
        if row is None:
            raise NotFound("PAYMENT_NOT_FOUND", "no payment for this order")
        return row

    async def pay(self, order_id: str, merchant: str, channel: str,
                  amount_fen: int) -> dict[str, Any]:
        """Idempotent by order: a retry answers the payment already made, never a second
        charge; the same order with another amount is refused."""
        if channel not in CHANNELS:
            raise Invalid("CHANNEL_UNKNOWN", f"channel is one of {sorted(CHANNELS)}")
        b = self.behaviour
        if b.mode == "refuse":  # after delay_ms, as a channel thinking it over
            await asyncio.sleep(b.delay_ms / 1000)
            raise Invalid("PAYMENT_REFUSED", "the channel declined this order")
        status, resolve_to, resolve_at = {
            "success": ("success", None, None),
            "fail": ("failed", None, None), "refuse": ("failed", None, None),
            "timeout": ("success", None, None),
            "unknown": ("pending", "failed", utc_now() + timedelta(
                milliseconds=b.resolve_after_ms)),
            "late_success": ("pending", "success", utc_now() + timedelta(
                milliseconds=b.resolve_after_ms)),
        }[b.mode]
        now = utc_now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(payments).values(
                    order_id=order_id, merchant=merchant, channel=channel,
                    amount_fen=amount_fen, status=status, trade_no=secrets.token_hex(16),
                    resolve_at=resolve_at, resolve_to=resolve_to, created_at=now,
                    updated_at=now))
        except IntegrityError:
            row = self.get(order_id)
            if row.amount_fen != amount_fen or row.merchant != merchant:
                raise Conflict("ORDER_CONFLICT", "this order was paid with another "
                               "amount or merchant") from None
            return self.view(row)
        if b.mode == "timeout" or b.delay_ms:
            await asyncio.sleep(b.delay_ms / 1000)
        return self.view(self.get(order_id))

    def refund(self, order_id: str) -> dict[str, Any]:
        row = self.get(order_id)
        if row.status == "refunded":
            return self.view(row)
        if row.status != "success":
            raise Conflict("PAYMENT_NOT_REFUNDABLE", f"payment is {row.status}")
        with self.engine.begin() as conn:
            conn.execute(update(payments).where(payments.c.order_id == order_id,
                                                payments.c.status == "success")
                         .values(status="refunded", updated_at=utc_now()))
        return self.view(self.get(order_id))

    def resolve_due(self, order_id: str | None = None) -> list[str]:
        """Pending payments whose time has come take their final outcome (only
        ``order_id``'s when given); their orders."""
        now = utc_now()
        due_now = [payments.c.status == "pending", payments.c.resolve_at <= now]
        if order_id is not None:
            due_now.append(payments.c.order_id == order_id)
        with self.engine.begin() as conn:
            due = conn.execute(select(payments.c.order_id, payments.c.resolve_to)
                               .where(*due_now)).all()
            for order_id, outcome in due:
                conn.execute(update(payments).where(payments.c.order_id == order_id,
                                                    payments.c.status == "pending")
                             .values(status=outcome, updated_at=now))
        return [d[0] for d in due]

    def on_day(self, day: str) -> list[dict[str, Any]]:
        """Every payment created on a China Standard Time day (the merchant's statement)."""
        self.resolve_due()
        start, end = cst_day_span(date.fromisoformat(day))
        with self.engine.connect() as conn:
            rows = conn.execute(select(payments).where(
                payments.c.created_at >= start, payments.c.created_at < end)).all()
        return [self.view(r) for r in rows]
