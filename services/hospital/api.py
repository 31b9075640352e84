"""HTTP API of the hospital's outpatient service. Operators set up departments, doctors
and sessions; the hospital's own systems and the channel's backend (the service token)
book, cancel and move appointments for a card, check a verified card in, call the next
patient, publish and read reports. Every refusal has a stable code (see each route)."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi import Response as Reply
from fastapi.responses import Response

from ..common.auth import Admin, DataReader, Peer
from ..common.cards.side_routes import DATA_AUTH, ExportPage
from ..common.db import export_page
from ..common.errors import Invalid, error_responses
from .deps import Hospital
from .schedule import minutes
from .schemas import (
    Bill,
    Booking,
    BookingIn,
    Called,
    CardIn,
    Charged,
    CheckedIn,
    CheckInIn,
    ClockIn,
    DepartmentIn,
    DoctorIn,
    DrillClock,
    FeesIn,
    PaidIn,
    Place,
    Report,
    ReportIn,
    RescheduleIn,
    SessionIn,
    Slot,
)
from .tables import EXPORTS

SessionId = Annotated[int, Path(ge=1, le=2**62)]
BookingId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$")]
BillId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$")]
CardQuery = Annotated[str, Query(pattern=r"^[0-9A-F]{64}$")]
AUTH = [(401, "UNAUTHENTICATED", "no bearer token"), (403, "FORBIDDEN", "token not allowed")]
INVALID = (422, "INVALID_REQUEST", "malformed or impossible values")
SESSION = (404, "SESSION_NOT_FOUND", "no such session")
BOOKING = (404, "BOOKING_NOT_FOUND", "no such booking for this card")
PASSED = (409, "SLOT_PASSED", "the slot's time has come")
TODAY = (409, "SESSION_NOT_TODAY", "the session is not today")

admin = APIRouter(prefix="/hospital/v1/admin", tags=["admin"], dependencies=[Admin])
data = APIRouter(prefix="/hospital/v1", tags=["data"], dependencies=[DataReader])
router = APIRouter(prefix="/hospital/v1", tags=["peer"], dependencies=[Peer])


@admin.post("/departments", status_code=201, summary="Add a department",
            responses=error_responses(*AUTH, INVALID,
                                      (409, "DEPARTMENT_EXISTS", "registered already")))
def add_department(h: Hospital, body: DepartmentIn) -> dict:
    h.schedule.add_department(body.code, body.name)
    return {"code": body.code}


@admin.post("/doctors", status_code=201, summary="Add a doctor to a department",
            responses=error_responses(*AUTH, INVALID,
                                      (404, "DEPARTMENT_NOT_FOUND", "no such department"),
                                      (409, "DOCTOR_EXISTS", "registered already")))
def add_doctor(h: Hospital, body: DoctorIn) -> dict:
    h.schedule.add_doctor(body.doctor_id, body.dept_code, body.name)
    return {"doctor_id": body.doctor_id}


@admin.post("/sessions", status_code=201, summary="Open a doctor's session on a day: "
            "its slots, their size and the share kept for walk-ins",
            responses=error_responses(*AUTH, INVALID,
                                      (404, "DOCTOR_NOT_FOUND", "no such doctor"),
                                      (409, "SESSION_EXISTS", "one at that start already")))
def add_session(h: Hospital, body: SessionIn) -> dict:
    try:
        day = date.fromisoformat(body.day)
    except ValueError:
        raise Invalid("INVALID_REQUEST", "day: not a date") from None
    sid = h.schedule.add_session(
        body.doctor_id, day, minutes(body.start), minutes(body.end), body.slot_minutes,
        body.per_slot, round(body.walk_in_share * 1000), body.holders_per_walk_in, body.drill)
    return {"session_id": sid}


@admin.put("/sessions/{session_id}/clock", response_model=DrillClock,
           summary="Set a drill session's clock (its slots, check-ins and board follow it)",
           responses=error_responses(*AUTH, INVALID, SESSION,
                                     (409, "NOT_A_DRILL", "the session keeps the wall clock")))
def set_clock(h: Hospital, session_id: SessionId, body: ClockIn) -> dict:
    return h.schedule.set_clock(session_id, minutes(body.at))


@router.get("/sessions/{session_id}/slots", response_model=list[Slot],
            summary="A session's slots: how many may book each, how many did",
            responses=error_responses(*AUTH, SESSION))
def slots(h: Hospital, session_id: SessionId) -> list[dict]:
    return h.schedule.slots(session_id)


@router.post("/bookings", response_model=Booking, status_code=201,
             summary="Book a slot for a card (the channel, on the resident's behalf)",
             responses=error_responses(*AUTH, INVALID, SESSION, PASSED,
                                       (409, "SLOT_FULL", "fully booked"),
                                       (409, "ALREADY_BOOKED", "this card holds a booking "
                                        "in this session")))
def book(h: Hospital, body: BookingIn) -> dict:
    return h.schedule.book(body.session_id, body.slot, body.card_id)


@router.get("/bookings", response_model=list[Booking], summary="A card's bookings",
            responses=error_responses(*AUTH, INVALID))
def bookings_of(h: Hospital, card_id: CardQuery) -> list[dict]:
    return h.schedule.of_card(card_id)


@router.post("/bookings/{booking_id}/cancel", response_model=Booking,
             summary="Cancel a booking before its slot",
             responses=error_responses(*AUTH, INVALID, BOOKING, PASSED,
                                       (409, "BOOKING_STATE_CONFLICT", "not booked now")))
def cancel(h: Hospital, booking_id: BookingId, body: CardIn) -> dict:
    return h.schedule.cancel(booking_id, body.card_id)


@router.post("/bookings/{booking_id}/reschedule", response_model=Booking, status_code=201,
             summary="Move a booking to another slot of its session (or nothing changes)",
             responses=error_responses(*AUTH, INVALID, BOOKING, PASSED,
                                       (409, "SLOT_FULL", "fully booked"),
                                       (409, "BOOKING_STATE_CONFLICT", "not booked now")))
def reschedule(h: Hospital, booking_id: BookingId, body: RescheduleIn) -> dict:
    return h.schedule.reschedule(booking_id, body.card_id, body.slot)


@router.post("/sessions/{session_id}/check-ins", response_model=CheckedIn, status_code=201,
             summary="Check a verified card in: a holder at their slot's time, a walk-in, "
             "or a revisit",
             responses=error_responses(*AUTH, INVALID, SESSION, TODAY,
                                       (409, "ALREADY_WAITING", "waits already"),
                                       (409, "NOT_SEEN_YET", "a revisit follows a call")))
def check_in(h: Hospital, session_id: SessionId, body: CheckInIn) -> dict:
    return h.calling.check_in(session_id, body.card_id, body.revisit)


@router.post("/sessions/{session_id}/call", response_model=Called,
             summary="Call the next patient by the calling rule (204: nobody due waits), "
             "or a named waiting patient out of turn (the board's recall)",
             responses={204: {"description": "nobody due waits"},
                        **error_responses(*AUTH, INVALID, SESSION, TODAY,
                                          (404, "NOT_WAITING", "the named card is not "
                                           "waiting and due"))})
def call(h: Hospital, session_id: SessionId, card_id: CardQuery | None = None
         ) -> dict | Response:
    nxt = h.calling.call(session_id, card_id)
    return Response(status_code=204) if nxt is None else nxt


@router.get("/sessions/{session_id}/queue", response_model=Place,
            summary="A card's place on the board and its expected wait",
            responses=error_responses(*AUTH, INVALID, SESSION,
                                      (404, "NOT_WAITING", "not waiting here")))
def place(h: Hospital, session_id: SessionId, card_id: CardQuery) -> dict:
    return h.calling.position(session_id, card_id)


@router.post("/reports", status_code=201, summary="Publish a lab or imaging report for a card",
             responses=error_responses(*AUTH, INVALID))
def publish(h: Hospital, body: ReportIn) -> dict:
    return {"report_id": h.reports.publish(body.card_id, body.kind, body.title, body.body)}


@router.get("/reports", response_model=list[Report],
            summary="A card's reports, newest first (that card's only)",
            responses=error_responses(*AUTH, INVALID))
def reports_of(h: Hospital, card_id: CardQuery,
               limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[dict]:
    return h.reports.of_card(card_id, limit)


@router.post("/fees", response_model=Charged, status_code=201,
             summary="Charge items to a card's visit (the doctor's or a department's orders)",
             responses=error_responses(*AUTH, INVALID))
def charge(h: Hospital, body: FeesIn) -> dict:
    return {"fee_ids": h.billing.charge(body.card_id, body.session_id,
                                        [i.model_dump() for i in body.items])}


@router.post("/bills", response_model=Bill, status_code=201,
             summary="The bill to settle: the card's open one (200), or a new one of its "
             "unbilled fees (201); its ID is the settlement upload's idempotency key",
             responses={200: {"description": "the card's open bill, unchanged",
                              "model": Bill},
                        **error_responses(*AUTH, INVALID,
                                          (409, "NOTHING_TO_BILL", "no fee waits"))})
def bill(h: Hospital, body: CardIn, reply: Reply) -> dict:
    out, made = h.billing.bill(body.card_id)
    reply.status_code = 201 if made else 200
    return out


@router.get("/bills", response_model=list[Bill], summary="A card's bills, oldest first",
            responses=error_responses(*AUTH, INVALID))
def bills_of(h: Hospital, card_id: CardQuery) -> list[dict]:
    return h.billing.of_card(card_id)


@router.post("/bills/{bill_id}/paid", response_model=Bill,
             summary="Report a bill paid: through the e-SSC settlement (its ID), by the "
             "phone's wallet, or at a window (again the same way: the same answer)",
             responses=error_responses(*AUTH, INVALID,
                                       (404, "BILL_NOT_FOUND", "no such bill for this card"),
                                       (409, "BILL_ALREADY_PAID", "paid another way")))
def paid(h: Hospital, bill_id: BillId, body: PaidIn) -> dict:
    return h.billing.paid(bill_id, body.card_id, body.paid_by, body.settlement_id)


@data.get("/export/{source}", response_model=ExportPage,
          summary="A page of bookings, check-ins or bills for the data resources layer (card IDs "
          "only), in key order after a cursor", responses=error_responses(*DATA_AUTH))
def export(h: Hospital, source: str, after: Annotated[str | None, Query(max_length=200)] = None,
           limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
    return export_page(EXPORTS, h.engine, source, after, limit)
