"""Request and answer models of the e-SSC system's API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictInt, field_validator

from ..common.cards.routes import Strict
from ..common.money import MAX_ITEM_FEN, MAX_ITEMS, MAX_VISIT_FEN


class Insured(Strict):
    ssc_card_no: str = Field(pattern=r"^[0-9]{20}$")
    id_type: str = Field("01", pattern=r"^[0-9]{2}$")
    id_number: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=64)
    phone: str | None = Field(None, pattern=r"^1[0-9]{10}$")
    region: str = Field(pattern=r"^[0-9]{6}$", description="insurance area code")
    insurance_type: Literal["310", "390"] = Field(
        "390", description="310 employee basic, 390 urban and rural resident basic")
    account_balance_fen: StrictInt = Field(0, ge=0, le=10**12)
    card_state: StrictInt = Field(1, description="e-SSC state: 0 not enabled, 1 normal, "
                                  "2 lost, 7 void, 8 pre-lost, 9 cancelled",
                                  json_schema_extra={"enum": [0, 1, 2, 7, 8, 9]})

    @field_validator("card_state")
    @classmethod
    def _known_state(cls, value: int) -> int:
        if value not in (0, 1, 2, 7, 8, 9):
            raise ValueError("e-SSC state is one of 0, 1, 2, 7, 8, 9")
        return value


class InsuredBatch(Strict):
    insured: list[Insured] = Field(min_length=1, max_length=5000)


class ClaimRequest(Strict):
    id_type: str = Field("01", pattern=r"^[0-9]{2}$")
    id_number: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=64)


class SocialCard(BaseModel):
    ssc_card_no: str
    id_type: str
    id_number: str
    name: str
    region: str
    insurance_type: str
    account_balance_fen: int
    card_state: int


class SocialCode(BaseModel):
    qr_text: str
    kind: Literal["essc"]
    expires_at: str
    refresh_after_s: int


class SocialVerifyRequest(Strict):
    qr_text: str = Field(max_length=120)
    terminal_id: str = Field(min_length=16, max_length=16)
    institution_code: str = Field(min_length=12, max_length=12)
    institution_name: str = Field(max_length=128)
    city_code: str = Field(pattern=r"^[0-9]{6}$")
    terminal_type: Literal[1, 2, 99]
    step: Literal[0, 10101, 10102, 10103, 10104, 10105, 10106, 10107]
    time: str = Field(pattern=r"^[0-9]{14}$")


class IdentityRequest(Strict):
    ssc_card_no: str = Field(pattern=r"^[0-9]{20}$")
    institution_code: str = Field(pattern=r"^[0-9A-Z]{12}$")


class FeeItemIn(Strict):
    code: str = Field(min_length=1, max_length=32, description="the hospital's item code")
    category: Literal["A", "B", "C"] = Field(description="A covered, B partly self-paid "
                                             "first (乙类), C fully at own expense (全自费)")
    amount_fen: StrictInt = Field(ge=0, le=MAX_ITEM_FEN)


class UploadRequest(Strict):
    ec_token: str = Field(pattern=r"^[0-9]{6}[0-9A-F]{32}$", description="the voucher token "
                          "from the (fused) code's verification")
    pay_channel: Literal["WECHAT", "ALIPAY", "UNIONPAY"] = "WECHAT"
    items: list[FeeItemIn] = Field(min_length=1, max_length=MAX_ITEMS, description=(
        f"at most {MAX_ITEMS} items of at most {MAX_ITEM_FEN} fen, at most {MAX_VISIT_FEN} "
        "fen in all (AMOUNT_LIMIT), the limits of the payment gateway too"))


class SettlementView(BaseModel):
    settlement_id: str = Field(description="message ID: institution (12) + "
                               "yyyyMMddHHmmss (14) + sequence (4)")
    state: str
    institution_code: str
    ssc_card_no: str
    total_fen: int
    fund_fen: int | None
    account_fen: int | None
    cash_fen: int | None
    deductible_fen: int | None
    channel: str
    policy: str | None
    usage_record_id: int | None


class NotifyRequest(Strict):
    order_id: str = Field(pattern=r"^[0-9A-Z]{30}$")
