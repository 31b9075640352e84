"""The phone as the hospital's kiosk (the paper's "mobile self-service kiosk"): through the
unified entry a logged-in resident books a slot for their own EHC card, sees and cancels
their bookings, their place on the calling board, their reports and their bills. The entry calls the
hospital's outpatient service on the resident's behalf; the resident's session is their
consent, and only their own card is ever named."""

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from ..common.cards.routes import INVALID, Strict
from ..common.errors import Conflict, Unavailable, error_responses
from .deps import Channel, Resident
from .entry import ChannelSystem, Session
from .peers import HospitalPeer

SESSION = [(401, "SESSION_INVALID", "no or expired session token")]
NO_CARD = (409, "NO_EHC_CARD", "the resident has no EHC card yet (claim it first)")
DOWN = [(503, "HOSPITAL_UNAVAILABLE", "the hospital service did not answer"),
        (503, "HOSPITAL_NOT_CONFIGURED", "no hospital service configured")]
SessionId = Annotated[int, Path(ge=1, le=2**62)]

router = APIRouter(prefix="/channel/v1/hospital", tags=["resident"])


class BookingRequest(Strict):
    session_id: int = Field(ge=1, le=2**62)
    slot: str = Field(pattern=r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$", examples=["09:30"])


def _hospital(ch: ChannelSystem) -> HospitalPeer:
    if ch.hospital is None:
        raise Unavailable("HOSPITAL_NOT_CONFIGURED", "no hospital service configured")
    return ch.hospital


def _card(ch: ChannelSystem, s: Session) -> str:
    card = ch.state_of(s)["ehc_card_id"]
    if not card:
        raise Conflict("NO_EHC_CARD", "the resident has no EHC card yet (claim it first)")
    return card


@router.get("/sessions/{session_id}/slots", summary="A doctor's session: its slots and "
            "what is free", responses=error_responses(*SESSION, *DOWN,
                                                      (404, "SESSION_NOT_FOUND", "no such "
                                                       "session")))
async def slots(ch: Channel, s: Resident, session_id: SessionId) -> Any:
    return await _hospital(ch).get(f"/hospital/v1/sessions/{session_id}/slots")


@router.post("/bookings", status_code=201, summary="Book a slot for my EHC card",
             responses=error_responses(*SESSION, INVALID, NO_CARD, *DOWN,
                                       (404, "SESSION_NOT_FOUND", "no such session"),
                                       (409, "SLOT_FULL", "fully booked"),
                                       (409, "SLOT_PASSED", "its time has come"),
                                       (409, "ALREADY_BOOKED", "one booking a session")))
async def book(ch: Channel, s: Resident, body: BookingRequest) -> Any:
    return await _hospital(ch).post("/hospital/v1/bookings", {
        "session_id": body.session_id, "slot": body.slot, "card_id": _card(ch, s)})


@router.get("/bookings", summary="My bookings",
            responses=error_responses(*SESSION, NO_CARD, *DOWN))
async def bookings(ch: Channel, s: Resident) -> Any:
    return await _hospital(ch).get("/hospital/v1/bookings", {"card_id": _card(ch, s)})


@router.post("/bookings/{booking_id}/cancel", summary="Cancel my booking before its slot",
             responses=error_responses(*SESSION, NO_CARD, *DOWN,
                                       (404, "BOOKING_NOT_FOUND", "not a booking of mine"),
                                       (409, "SLOT_PASSED", "its time has come"),
                                       (409, "BOOKING_STATE_CONFLICT", "not booked now")))
async def cancel(ch: Channel, s: Resident,
                 booking_id: Annotated[str, Path(pattern=r"^[0-9a-f]{24}$")]) -> Any:
    return await _hospital(ch).post(f"/hospital/v1/bookings/{booking_id}/cancel",
                                    {"card_id": _card(ch, s)})


@router.get("/queue", summary="My place on a session's calling board and my expected wait",
            responses=error_responses(*SESSION, NO_CARD, *DOWN,
                                      (404, "NOT_WAITING", "not checked in there"),
                                      (404, "SESSION_NOT_FOUND", "no such session")))
async def queue(ch: Channel, s: Resident,
                session_id: Annotated[int, Query(ge=1, le=2**62)]) -> Any:
    return await _hospital(ch).get(f"/hospital/v1/sessions/{session_id}/queue",
                                   {"card_id": _card(ch, s)})


@router.get("/reports", summary="My examination reports, newest first",
            responses=error_responses(*SESSION, NO_CARD, *DOWN))
async def reports(ch: Channel, s: Resident) -> Any:
    return await _hospital(ch).get("/hospital/v1/reports", {"card_id": _card(ch, s)})


@router.get("/bills", summary="My hospital bills: what each visit charged, open or paid "
            "(and how: the insurance settlement, the wallet or a window)",
            responses=error_responses(*SESSION, NO_CARD, *DOWN))
async def bills(ch: Channel, s: Resident) -> Any:
    return await _hospital(ch).get("/hospital/v1/bills", {"card_id": _card(ch, s)})
