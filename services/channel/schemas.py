"""Request and answer bodies of the unified entry."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..common.cards.routes import Strict


class CodeRequest(Strict):
    id_type: str = Field("01", pattern=r"^01$", description="resident ID card")
    id_number: str = Field(min_length=18, max_length=18)
    name: str = Field(min_length=1, max_length=64)


class Challenge(BaseModel):
    challenge_id: str
    expires_in_s: int
    delivery: str


class LoginRequest(Strict):
    challenge_id: str = Field(min_length=16, max_length=64)
    code: str = Field(pattern=r"^[0-9]{6}$", description="the code the SMS carried")


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
