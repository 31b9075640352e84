"""Request and answer bodies of the SMS gateway."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..common.cards.routes import Strict

PHONE = r"^1[0-9]{10}$"


class SendRequest(Strict):
    phone: str = Field(pattern=PHONE, examples=["13800138000"])
    text: str = Field(min_length=1, max_length=300)


class SendAnswer(BaseModel):
    message_id: int


class OutboxMessage(BaseModel):
    message_id: int
    text: str
    sent_at: str
