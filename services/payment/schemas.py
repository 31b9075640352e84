"""Request and answer bodies of the payment gateway."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ..common.money import MAX_VISIT_FEN
from .gateway import CHANNELS


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    order_id: str = Field(pattern=r"^[0-9A-Za-z_\-]{1,40}$")
    merchant: str = Field(pattern=r"^[0-9A-Z]{12}$")
    channel: str = Field(description=f"one of {sorted(CHANNELS)}", max_length=10)
    amount_fen: StrictInt = Field(gt=0, le=MAX_VISIT_FEN)


class Payment(BaseModel):
    order_id: str
    merchant: str
    channel: str
    amount_fen: int
    status: str = Field(description="pending | success | failed | refunded")
    trade_no: str
    created_at: str
