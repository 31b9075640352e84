"""HTTP API of the payment gateway: merchants' systems pay, query and refund (service
token); operators set its behaviour for drills and fault tests."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from ..common.caller_routes import ADMIN, INVALID, PEER
from ..common.errors import DAY, error_responses, parse_day
from .gateway import CHANNELS, Behaviour, Gateway

NOT_FOUND = (404, "PAYMENT_NOT_FOUND", "no payment for this order")


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    order_id: str = Field(pattern=r"^[0-9A-Za-z_\-]{1,40}$")
    merchant: str = Field(pattern=r"^[0-9A-Z]{12}$")
    channel: str = Field(description=f"one of {sorted(CHANNELS)}", max_length=10)
    amount_fen: StrictInt = Field(gt=0, le=10**10)


class Payment(BaseModel):
    order_id: str
    merchant: str
    channel: str
    amount_fen: int
    status: str = Field(description="pending | success | failed | refunded")
    trade_no: str
    created_at: str


def make_router(gw: Gateway, admin_guard, service_guard) -> APIRouter:  # type: ignore[no-untyped-def]
    router = APIRouter(prefix="/pay/v1")
    peer = [Depends(service_guard)]

    @router.post("/payments", response_model=Payment, tags=["peer"], dependencies=peer,
                 summary="Take a payment (idempotent by order ID: never a second charge)",
                 responses=error_responses(*PEER, INVALID,
                                           (422, "CHANNEL_UNKNOWN", "unknown channel"),
                                           (409, "ORDER_CONFLICT", "order paid otherwise")))
    async def pay(body: PayRequest) -> dict:
        return await gw.pay(body.order_id, body.merchant, body.channel, body.amount_fen)

    @router.get("/payments/{order_id}", response_model=Payment, tags=["peer"],
                dependencies=peer, summary="What became of a payment",
                responses=error_responses(*PEER, NOT_FOUND))
    def query(order_id: str) -> dict:
        return gw.view(gw.get(order_id))

    @router.post("/payments/{order_id}/refund", response_model=Payment, tags=["peer"],
                 dependencies=peer, summary="Refund a successful payment (idempotent)",
                 responses=error_responses(*PEER, NOT_FOUND,
                                           (409, "PAYMENT_NOT_REFUNDABLE", "not paid")))
    def refund(order_id: str) -> dict:
        return gw.refund(order_id)

    @router.get("/statements", response_model=list[Payment], tags=["peer"],
                dependencies=peer, summary="Every payment created on a UTC day",
                responses=error_responses(*PEER, INVALID))
    def statement(day: Annotated[str, Query(alias="date", pattern=DAY)]) -> list[dict]:
        return gw.on_day(parse_day(day).isoformat())

    @router.post("/admin/behaviour", tags=["admin"], dependencies=[Depends(admin_guard)],
                 summary="How new payments are answered (fault drills)",
                 responses=error_responses(*ADMIN, INVALID))
    def behaviour(body: Behaviour) -> dict:
        gw.behaviour = body
        return body.model_dump()

    return router
