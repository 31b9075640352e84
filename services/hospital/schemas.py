"""Request and answer bodies of the hospital service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..common.cards.routes import Strict  # no unknown fields, no coercion, no NUL

CARD = Field(pattern=r"^[0-9A-F]{64}$", description="the EHC card ID (verified upstream)")
CLOCK = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"


class DepartmentIn(Strict):
    code: str = Field(pattern=r"^[0-9]{4}$", examples=["0101"])
    name: str = Field(min_length=1, max_length=64)


class DoctorIn(Strict):
    doctor_id: str = Field(pattern=r"^[0-9A-Za-z]{1,16}$")
    dept_code: str = Field(pattern=r"^[0-9]{4}$")
    name: str = Field(min_length=1, max_length=64)


class SessionIn(Strict):
    doctor_id: str = Field(pattern=r"^[0-9A-Za-z]{1,16}$")
    day: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", examples=["2026-12-01"])
    start: str = Field(pattern=CLOCK, examples=["08:00"])
    end: str = Field(pattern=CLOCK, examples=["11:30"])
    slot_minutes: int = Field(15, ge=5, le=120)
    per_slot: int = Field(4, ge=1, le=100, description="patients a slot holds")
    walk_in_share: float = Field(0.3, ge=0, le=1, description="kept for walk-ins")
    holders_per_walk_in: int = Field(2, ge=1, le=20, description="calling rule")
    drill: bool = Field(False, description="a drill (training, co-simulation): the session "
                        "runs on the clock its operator sets, from the day's midnight")


class ClockIn(Strict):
    at: str = Field(pattern=CLOCK, examples=["08:30"], description="the drill's time of day")


class DrillClock(BaseModel):
    session_id: int
    day: str
    at: str


class BookingIn(Strict):
    session_id: int = Field(ge=1, le=2**62)
    slot: str = Field(pattern=CLOCK)
    card_id: str = CARD


class CardIn(Strict):
    card_id: str = CARD


class RescheduleIn(Strict):
    card_id: str = CARD
    slot: str = Field(pattern=CLOCK)


class CheckInIn(Strict):
    card_id: str = CARD
    revisit: bool = Field(False, description="back with results, seen once already")


class Booking(BaseModel):
    booking_id: str
    session_id: int
    day: str
    slot: str
    card_id: str
    state: str


class Slot(BaseModel):
    slot: str
    bookable: int
    booked: int
    free: int
    passed: bool


class Place(BaseModel):
    position: int
    ahead: int
    expected_wait_min: float


class CheckedIn(Place):
    session_id: int
    card_id: str
    kind: str
    due: str


class Called(BaseModel):
    card_id: str
    kind: str
    booking_id: str | None
    due: str


class Report(BaseModel):
    report_id: int
    kind: str
    title: str
    body: str
    published_at: str


class ReportIn(Strict):
    """A lab's or imaging's report, published against the patient's card."""

    card_id: str = CARD
    kind: Literal["lab", "imaging"]
    title: str = Field(min_length=1, max_length=128)
    body: str = Field(min_length=1, max_length=4000)


class FeeItemIn(Strict):
    code: str = Field(pattern=r"^[0-9A-Za-z._-]{1,32}$", description="the hospital's item code")
    category: Literal["A", "B", "C"] = Field(description="the insurance policy's category")
    amount_fen: int = Field(ge=1, le=10**8, strict=True)


class FeesIn(Strict):
    """Items charged to a card's visit (the doctor's or a department's orders)."""

    card_id: str = CARD
    session_id: int | None = Field(None, ge=1, le=2**62, description="the visit's session")
    items: list[FeeItemIn] = Field(min_length=1, max_length=50)


class Charged(BaseModel):
    fee_ids: list[int]


class FeeItem(BaseModel):
    code: str
    category: str
    amount_fen: int


class Bill(BaseModel):
    bill_id: str
    card_id: str
    state: Literal["open", "paid"]
    amount_fen: int
    paid_by: str | None
    settlement_id: str | None
    items: list[FeeItem]


class PaidIn(Strict):
    card_id: str = CARD
    paid_by: Literal["essc", "self_pay", "window"]
    settlement_id: str | None = Field(None, pattern=r"^[0-9]{30}$", description="the e-SSC "
                                      "settlement's message ID (with paid_by essc only)")
