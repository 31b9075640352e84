"""Request and answer models of the card-management API (documentation and validation)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from ..common.cards.routes import Strict

IdType = Annotated[str, Field(pattern=r"^[0-9]{2}$", examples=["01"])]
Phone = Annotated[str, Field(pattern=r"^1[0-9]{10}$", examples=["13800138000"])]
Name = Annotated[str, Field(min_length=1, max_length=64, examples=["张三"])]


class ApplyRequest(Strict):
    id_type: IdType = "01"
    id_number: str = Field(max_length=32, examples=["11010020171225006X"])
    name: Name
    phone: Phone | None = None


class LookupRequest(Strict):
    id_type: IdType = "01"
    id_number: str = Field(max_length=32)


class ModifyRequest(Strict):
    phone: Phone | None = None
    name: Name | None = None


class FamilyRequest(ApplyRequest):
    relation: Literal["spouse", "child", "parent", "other"] = "child"


class Card(BaseModel):
    card_id: str = Field(examples=["B5D3E0C1..."])
    empi: str
    id_type: str
    id_number: str = Field(description="masked")
    name: str | None = Field(description="masked")
    sex: str | None
    birth_date: str | None
    phone: str | None = Field(description="masked")
    state: int = Field(description="1 normal, 2 lost, 3 cancelled, 4 confirmed, 5 not issued")
    card_type: int = Field(description="0 electronic, 1 physical")
    temporary: bool


class ApplyAnswer(Card):
    created: bool = Field(description="false when the card already existed (idempotent)")


class FamilyMember(Card):
    relation: str


class QrCode(BaseModel):
    qr_text: str
    kind: Literal["static", "dynamic", "temporary", "fused"]
    expires_at: str | None = Field(None, description="YYYYMMDDHHMMSS, China Standard Time")
    refresh_after_s: int | None = None


class VerifyRequest(BaseModel):
    """Documented shape of the hot-path body (checked by hand for speed)."""

    qr_text: str = Field(max_length=200, examples=["<64 hex>:0:<66 hex>"])
    terminal_id: str = Field(min_length=16, max_length=16, examples=["3301000000010101"])
    institution_code: str = Field(min_length=12, max_length=12, examples=["330100000001"])
    institution_name: str = Field(max_length=128, examples=["浙江省人民医院"])
    city_code: str = Field(max_length=6, examples=["330100"])
    terminal_type: Literal[1, 2, 99] = Field(description="1 window, 2 self-service, 99 other")
    step: Literal[0, 10101, 10102, 10103, 10104, 10105, 10106, 10107] = Field(
        description="10101 registration ... 10107 surgery, 0 other")
    time: str = Field(pattern=r"^[0-9]{14}$", description="terminal time, YYYYMMDDHHMMSS CST")


class InsuranceIdentity(BaseModel):
    ssc_card_no: str
    region: str
    insurance_type: str | None = None
    card_state: int | None = None
    ec_token: str | None = Field(None, description="38-character insurance voucher token")
    name: str | None = None


class VerifyAnswer(BaseModel):
    card_id: str
    empi: str
    name: str | None
    sex: str | None
    birth_date: str | None
    id_type: str
    id_number: str | None
    card_state: int
    code_kind: str
    temporary: bool
    linked_card_id: str | None
    usage_record_id: int
    verified_at: str
    essc: InsuranceIdentity | None = Field(
        None, description="fused codes only: the e-SSC / insurance identity")
    partial: bool | None = Field(None, description="fused codes only: true when the e-SSC "
                                 "side did not answer in time (only what the EHC side "
                                 "holds is given)")
    partial_reason: str | None = None


class BindRequest(Strict):
    ssc_card_no: str = Field(pattern=r"^[0-9]{20}$", description="the e-SSC card number")
    region: str = Field(pattern=r"^[0-9]{6}$", description="its insurance region code")


class Binding(BaseModel):
    binding_id: str
    ehc_card_id: str
    ssc_card_no: str
    region: str
    state: Literal["bound", "unbound"]
    version: int
    status: Literal["complete", "pending", "refused"] = "complete"


class SharedUsageRecord(BaseModel):
    source: Literal["ehc", "essc"]
    source_id: int
    institution_code: str
    terminal_id: str
    step: int
    code_kind: str
    at: str


class TemporaryRequest(Strict):
    name: Name | None = None
    sex: Literal["1", "2", "9"] | None = None


class TemporaryAnswer(BaseModel):
    card_id: str
    qr_text: str


class BindTemporaryRequest(Strict):
    qr_text: str = Field(max_length=200, description="the real card's code, as scanned")


class PatientLinkRequest(Strict):
    local_patient_id: str = Field(min_length=1, max_length=64)
    card_id: str = Field(pattern=r"^[0-9A-F]{64}$")


class UsageRecord(BaseModel):
    id: int
    card_id: str
    empi: str
    institution_code: str
    terminal_id: str
    city_code: str
    terminal_type: int
    step: int
    code_kind: str
    terminal_time: str
    verified_at: str


class NewbornRequest(Strict):
    birth_cert_no: str = Field(pattern=r"^[A-Z][0-9]{9}$", examples=["Q330012345"],
                               description="birth medical certificate number")
    name: str = Field(min_length=1, max_length=64)
    sex: Literal["1", "2"]
    birth_date: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", examples=["2026-11-20"])
