"""HTTP API of the SMS gateway: peers send, operators (and tests, and the demo) read the
outbox."""

from typing import Annotated

from fastapi import APIRouter, Query

from ..common.auth import Admin, Peer
from ..common.cards.routes import ADMIN, INVALID, PEER
from ..common.errors import error_responses
from .deps import Sms
from .schemas import PHONE, OutboxMessage, SendAnswer, SendRequest

router = APIRouter(prefix="/sms/v1")


@router.post("/messages", response_model=SendAnswer, status_code=201, dependencies=[Peer],
             tags=["peer"],
             summary="Send a text message (peer systems only)",
             responses=error_responses(*PEER, INVALID))
def send(sms: Sms, body: SendRequest) -> dict:
    return {"message_id": sms.send(body.phone, body.text)}


@router.get("/outbox", response_model=list[OutboxMessage], dependencies=[Admin],
            tags=["admin"],
            summary="The newest messages sent to a phone (operators, tests, the demo)",
            responses=error_responses(*ADMIN, INVALID))
def outbox(sms: Sms, phone: Annotated[str, Query(pattern=PHONE)],
           limit: Annotated[int, Query(ge=1, le=50)] = 5) -> list[dict]:
    return sms.latest(phone, limit)
