"""HTTP routes of settlement on the e-SSC side: the hospital's chain (terminals, every
state-changing call with an ``Idempotency-Key``), the gateway's notification, and the
operators' reconciliation."""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from ..common.auth import Admin, Peer
from ..common.cards.callers import Terminal
from ..common.cards.idempotency import request_hash
from ..common.cards.routes import ADMIN, INVALID, PEER, TERM_AUTH
from ..common.errors import DAY, error_responses, parse_day
from .deps import Faults, IdempotencyKey, Socialcard, Term
from .policy import FeeItem
from .reconcile import reconcile_day
from .schemas import NotifyRequest, SettlementView, UploadRequest
from .system import SocialcardSystem

KEYED = [(422, "IDEMPOTENCY_KEY_REQUIRED", "no or malformed Idempotency-Key"),
         (422, "IDEMPOTENCY_KEY_REUSED", "the key was used for another request"),
         (409, "REQUEST_IN_PROGRESS", "the first request with this key is running")]
NOT_FOUND = (404, "SETTLEMENT_NOT_FOUND", "no such settlement here")
STATE = (409, "SETTLEMENT_STATE_CONFLICT", "not allowed in its state")
CARD = [(409, "SSC_CARD_LOST", "lost"), (409, "SSC_CARD_CANCELLED", "cancelled")]


router = APIRouter(prefix="/essc/v1")


async def keyed(sc: SocialcardSystem, request: Request, term: Terminal, key: str | None,
                operation: Callable[..., Any], *args: Any) -> dict:
    """Run ``operation(*args)`` (plain or a coroutine) once per ``Idempotency-Key`` of the
    institution."""
    async def call() -> dict:
        result = operation(*args)
        return await result if inspect.isawaitable(result) else result

    digest = request_hash(request.method, request.url.path, await request.body())
    return await sc.idempotency.run(term.institution_code, key, digest, call)


@dataclass
class SettlementStep:
    """A terminal's keyed call on one settlement of its institution."""

    sc: SocialcardSystem
    settlement_id: str
    request: Request
    term: Terminal
    key: str | None

    async def run(self, operation: str) -> dict:
        return await keyed(self.sc, self.request, self.term, self.key,
                           getattr(self.sc.settlements, operation), self.settlement_id,
                           self.term.institution_code)


def settlement_step(sc: Socialcard, settlement_id: str, request: Request, term: Term,
                    key: IdempotencyKey = None) -> SettlementStep:
    return SettlementStep(sc, settlement_id, request, term, key)


Step = Annotated[SettlementStep, Depends(settlement_step)]


@router.post("/settlements", response_model=SettlementView, tags=["institution"],
             dependencies=[Faults], summary="Upload a visit's fee items against a voucher token",
             responses=error_responses(*TERM_AUTH, *KEYED, INVALID,
                                       (404, "EC_TOKEN_NOT_FOUND", "not issued here"),
                                       (410, "EC_TOKEN_EXPIRED", "expired"),
                                       (409, "EC_TOKEN_USED", "the voucher opened a "
                                        "settlement already")))
async def upload(sc: Socialcard, body: UploadRequest, request: Request, term: Term,
                 key: IdempotencyKey = None) -> dict:
    def call() -> dict:
        items = [FeeItem(i.code, i.category, i.amount_fen) for i in body.items]
        return sc.settlements.view(sc.settlements.upload(term.institution_code, term.level,
                                                         body.ec_token, items, body.pay_channel))

    return await keyed(sc, request, term, key, call)


@router.post("/settlements/{settlement_id}/pre-settle", tags=["institution"],
             summary="The split (fund, personal account, cash) without committing it",
             responses=error_responses(*TERM_AUTH, *KEYED, NOT_FOUND, STATE, *CARD))
async def presettle(step: Step) -> dict:
    return await step.run("presettle")


@router.post("/settlements/{settlement_id}/settle", response_model=SettlementView,
             dependencies=[Faults], tags=["institution"],
             summary="Commit the insurance part, then take the cash part through the "
             "payment gateway (unknown outcome: awaiting_confirmation)",
             responses=error_responses(*TERM_AUTH, *KEYED, NOT_FOUND, STATE, *CARD,
                                       (409, "SETTLEMENT_BUSY", "retry")))
async def settle(step: Step) -> dict:
    return await step.run("settle")


@router.post("/settlements/{settlement_id}/confirm", response_model=SettlementView,
             tags=["institution"], summary="Ask the gateway what became of the cash part",
             responses=error_responses(*TERM_AUTH, *KEYED, NOT_FOUND,
                                       (503, "PAYMENT_UNAVAILABLE", "gateway silent")))
async def confirm(step: Step) -> dict:
    return await step.run("confirm")


@router.post("/settlements/{settlement_id}/reverse", response_model=SettlementView,
             tags=["institution"], summary="Reverse (撤销) a visit; a paid cash part is refunded",
             responses=error_responses(*TERM_AUTH, *KEYED, NOT_FOUND, STATE,
                                       (409, "PAYMENT_UNCONFIRMED", "confirm first"),
                                       (503, "PAYMENT_UNAVAILABLE", "gateway silent")))
async def reverse(step: Step) -> dict:
    return await step.run("reverse")


@router.get("/settlements/{settlement_id}", response_model=SettlementView, tags=["institution"],
            responses=error_responses(*TERM_AUTH, NOT_FOUND))
def get_settlement(sc: Socialcard, settlement_id: str, term: Term) -> dict:
    return sc.settlements.view(sc.settlements.get(settlement_id, term.institution_code))


@router.post("/payments/notify", tags=["peer"], dependencies=[Peer, Faults],
             summary="The gateway's notice that a payment ended (we then ask it)",
             responses=error_responses(*PEER, INVALID, NOT_FOUND,
                                       (503, "PAYMENT_UNAVAILABLE", "gateway silent")))
async def notify(sc: Socialcard, body: NotifyRequest) -> dict:
    return await sc.settlements.confirm(body.order_id, None)


@router.get("/admin/settlements/reconcile", tags=["admin"], dependencies=[Admin],
            summary="Check a day's settlements: ledger, gateway, usage records",
            responses=error_responses(*ADMIN, INVALID,
                                      (503, "PAYMENT_UNAVAILABLE", "gateway silent")))
async def reconcile(sc: Socialcard, day: Annotated[str, Query(alias="date", pattern=DAY)]) -> dict:
    return await reconcile_day(sc.settlements, parse_day(day))
