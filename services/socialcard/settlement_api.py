"""HTTP routes of settlement on the e-SSC side: the hospital's chain (terminals, every
state-changing call with an ``Idempotency-Key``), the gateway's notification, and the
operators' reconciliation."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request

from ..common.caller_routes import ADMIN, INVALID, PEER, TERM_AUTH
from ..common.callers import Terminal
from ..common.errors import DAY, error_responses, parse_day
from ..common.idempotency import Idempotency, request_hash
from .policy import FeeItem
from .reconcile import reconcile_day
from .schemas import NotifyRequest, SettlementView, UploadRequest
from .settlement import Settlements

KEYED = [(422, "IDEMPOTENCY_KEY_REQUIRED", "no or malformed Idempotency-Key"),
         (422, "IDEMPOTENCY_KEY_REUSED", "the key was used for another request"),
         (409, "REQUEST_IN_PROGRESS", "the first request with this key is running")]
NOT_FOUND = (404, "SETTLEMENT_NOT_FOUND", "no such settlement here")
STATE = (409, "SETTLEMENT_STATE_CONFLICT", "not allowed in its state")
CARD = [(409, "SSC_CARD_LOST", "lost"), (409, "SSC_CARD_CANCELLED", "cancelled")]


def add_settlement_routes(router: APIRouter, st: Settlements, keys: Idempotency, Term,  # type: ignore[no-untyped-def]
                          admin_guard, peer_deps, faults) -> None:
    """``faults``: the e-SSC system's outage drill, which settlement obeys too."""
    Key = Annotated[str | None, Header(alias="Idempotency-Key")]

    async def keyed(request: Request, term: Terminal, key: str | None, call):  # type: ignore[no-untyped-def]
        digest = request_hash(request.method, request.url.path, await request.body())
        return await keys.run(term.institution_code, key, digest, call)

    @router.post("/settlements", response_model=SettlementView, tags=["institution"],
                 dependencies=[Depends(faults.apply)],
                 summary="Upload a visit's fee items against a voucher token",
                 responses=error_responses(*TERM_AUTH, *KEYED, INVALID,
                                           (404, "EC_TOKEN_NOT_FOUND", "not issued here"),
                                           (410, "EC_TOKEN_EXPIRED", "expired")))
    async def upload(body: UploadRequest, request: Request, term: Term, key: Key = None) -> dict:
        async def call() -> dict:
            items = [FeeItem(i.code, i.category, i.amount_fen) for i in body.items]
            return st.view(st.upload(term.institution_code, term.level, body.ec_token,
                                     items, body.pay_channel))
        return await keyed(request, term, key, call)

    @router.post("/settlements/{settlement_id}/pre-settle", tags=["institution"],
                 summary="The split (fund, personal account, cash) without committing it",
                 responses=error_responses(*TERM_AUTH, *KEYED, NOT_FOUND, STATE, *CARD))
    async def presettle(settlement_id: str, request: Request, term: Term, key: Key = None) -> dict:
        async def call() -> dict:
            return st.presettle(settlement_id, term.institution_code)
        return await keyed(request, term, key, call)

    @router.post("/settlements/{settlement_id}/settle", response_model=SettlementView,
                 dependencies=[Depends(faults.apply)],
                 tags=["institution"],
                 summary="Commit the insurance part, then take the cash part through the "
                 "payment gateway (unknown outcome: awaiting_confirmation)",
                 responses=error_responses(*TERM_AUTH, *KEYED, NOT_FOUND, STATE, *CARD,
                                           (409, "SETTLEMENT_BUSY", "retry")))
    async def settle(settlement_id: str, request: Request, term: Term, key: Key = None) -> dict:
        async def call() -> dict:
            return await st.settle(settlement_id, term.institution_code)
        return await keyed(request, term, key, call)

    @router.post("/settlements/{settlement_id}/confirm", response_model=SettlementView,
                 tags=["institution"], summary="Ask the gateway what became of the cash part",
                 responses=error_responses(*TERM_AUTH, *KEYED, NOT_FOUND,
                                           (503, "PAYMENT_UNAVAILABLE", "gateway silent")))
    async def confirm(settlement_id: str, request: Request, term: Term, key: Key = None) -> dict:
        async def call() -> dict:
            return await st.confirm(settlement_id, term.institution_code)
        return await keyed(request, term, key, call)

    @router.post("/settlements/{settlement_id}/reverse", response_model=SettlementView,
                 tags=["institution"],
                 summary="Reverse (撤销) a visit; a paid cash part is refunded",
                 responses=error_responses(*TERM_AUTH, *KEYED, NOT_FOUND, STATE,
                                           (409, "PAYMENT_UNCONFIRMED", "confirm first"),
                                           (503, "PAYMENT_UNAVAILABLE", "gateway silent")))
    async def reverse(settlement_id: str, request: Request, term: Term, key: Key = None) -> dict:
        async def call() -> dict:
            return await st.reverse(settlement_id, term.institution_code)
        return await keyed(request, term, key, call)

    @router.get("/settlements/{settlement_id}", response_model=SettlementView,
                tags=["institution"], responses=error_responses(*TERM_AUTH, NOT_FOUND))
    def get_settlement(settlement_id: str, term: Term) -> dict:
        return st.view(st.get(settlement_id, term.institution_code))

    @router.post("/payments/notify", tags=["peer"], dependencies=peer_deps,
                 summary="The gateway's notice that a payment ended (we then ask it)",
                 responses=error_responses(*PEER, INVALID, NOT_FOUND,
                                           (503, "PAYMENT_UNAVAILABLE", "gateway silent")))
    async def notify(body: NotifyRequest) -> dict:
        return await st.confirm(body.order_id, None)

    @router.get("/admin/settlements/reconcile", tags=["admin"],
                dependencies=[Depends(admin_guard)],
                summary="Check a day's settlements: ledger, gateway, usage records",
                responses=error_responses(*ADMIN, INVALID,
                                          (503, "PAYMENT_UNAVAILABLE", "gateway silent")))
    async def reconcile(day: Annotated[str, Query(alias="date", pattern=DAY)]) -> dict:
        return await reconcile_day(st, parse_day(day))
