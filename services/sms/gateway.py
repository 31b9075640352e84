"""Sending a text message. ``SmsGateway`` is what the stack calls; ``OutboxGateway``
keeps each message (encrypted) in the outbox, where tests, the demo and an operator's
console read it. A real provider plugs in as another ``SmsGateway`` (its ``send`` posts
to the provider and may still keep the outbox copy)."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Engine, insert, select

from ..common.cst import utc_now
from ..common.pii import FieldCipher
from .tables import outbox


class SmsGateway(Protocol):
    def send(self, phone: str, text: str) -> int:
        """Hand one message to the provider; its message ID."""
        ...


class OutboxGateway:
    def __init__(self, engine: Engine, cipher: FieldCipher) -> None:
        self.engine = engine
        self.cipher = cipher

    def send(self, phone: str, text: str) -> int:
        c = self.cipher
        with self.engine.begin() as conn:
            made = conn.execute(insert(outbox).values(
                phone_digest=c.digest(phone), phone_enc=c.encrypt(phone),
                text_enc=c.encrypt(text), sent_at=utc_now())).inserted_primary_key
        assert made is not None
        return int(made[0])

    def latest(self, phone: str, limit: int) -> list[dict[str, Any]]:
        """The newest messages sent to ``phone``, newest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(outbox).where(
                outbox.c.phone_digest == self.cipher.digest(phone))
                .order_by(outbox.c.id.desc()).limit(limit)).all()
        return [{"message_id": r.id, "text": self.cipher.decrypt(r.text_enc),
                 "sent_at": r.sent_at.isoformat()} for r in rows]
