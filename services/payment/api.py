"""HTTP API of the payment gateway: merchants' systems pay, query and refund (service
token); operators set its behaviour for drills and fault tests."""

from typing import Annotated

from fastapi import APIRouter, Query

from ..common.auth import Admin, Peer
from ..common.cards.routes import ADMIN, INVALID, PEER
from ..common.errors import DAY, error_responses, parse_day
from .deps import PaymentGateway
from .gateway import Behaviour
from .schemas import Payment, PayRequest

NOT_FOUND = (404, "PAYMENT_NOT_FOUND", "no payment for this order")


router = APIRouter(prefix="/pay/v1")


@router.post("/payments", response_model=Payment, tags=["peer"], dependencies=[Peer],
             summary="Take a payment (idempotent by order ID: never a second charge)",
             responses=error_responses(*PEER, INVALID, (422, "CHANNEL_UNKNOWN", "unknown channel"),
                                       (409, "ORDER_CONFLICT", "order paid otherwise")))
async def pay(gw: PaymentGateway, body: PayRequest) -> dict:
    return await gw.pay(body.order_id, body.merchant, body.channel, body.amount_fen)


@router.get("/payments/{order_id}", response_model=Payment, tags=["peer"], dependencies=[Peer],
            summary="What became of a payment", responses=error_responses(*PEER, NOT_FOUND))
def query(gw: PaymentGateway, order_id: str) -> dict:
    return gw.view(gw.get(order_id))


@router.post("/payments/{order_id}/refund", response_model=Payment, tags=["peer"],
             dependencies=[Peer], summary="Refund a successful payment (idempotent)",
             responses=error_responses(*PEER, NOT_FOUND,
                                       (409, "PAYMENT_NOT_REFUNDABLE", "not paid")))
def refund(gw: PaymentGateway, order_id: str) -> dict:
    return gw.refund(order_id)


@router.get("/statements", response_model=list[Payment], tags=["peer"], dependencies=[Peer],
            summary="Every payment created on a China Standard Time day",
            responses=error_responses(*PEER, INVALID))
def statement(gw: PaymentGateway,
              day: Annotated[str, Query(alias="date", pattern=DAY)]) -> list[dict]:
    return gw.on_day(parse_day(day).isoformat())


@router.post("/admin/behaviour", tags=["admin"], dependencies=[Admin],
             summary="How new payments are answered (fault drills)",
             responses=error_responses(*ADMIN, INVALID))
def behaviour(gw: PaymentGateway, body: Behaviour) -> dict:
    gw.behaviour = body
    return body.model_dump()
