"""Request and answer bodies of the unified entry."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..common.cards.routes import Strict


class LoginRequest(Strict):
    id_type: str = Field("01", pattern=r"^01$", description="resident ID card")
    id_number: str = Field(min_length=18, max_length=18)
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = Field(None, pattern=r"^1[0-9]{10}$")


class LoginAnswer(BaseModel):
    token: str
    expires_in_s: int


class HandoffRequest(Strict):
    channel: Literal["WECHAT", "ALIPAY", "UNIONPAY"] = "ALIPAY"


class Code(BaseModel):
    qr_text: str
    kind: str
    expires_at: str | None = None
    refresh_after_s: int | None = None
    svg: str = Field(description="the code rendered as an SVG document")
