"""HTTP API of the population registry (called by the card systems, not by the public)."""


from fastapi import APIRouter

from ..common.auth import Admin, Peer
from ..common.cards.idcard import refuse_invalid_id
from ..common.errors import error_responses
from .deps import Registry
from .residents import NewResident
from .schemas import BatchResult, ContactResult, RealnameCheck, RealnameResult, ResidentBatch

_BAD_ID = (422, "INVALID_ID_NUMBER", "the ID number is malformed (length, check digit, date)")
_AUTH = [(401, "UNAUTHENTICATED", "no bearer token"), (403, "FORBIDDEN", "token not allowed")]


router = APIRouter(prefix="/registry/v1", tags=["registry"])


@router.post("/realname-checks", response_model=RealnameResult, dependencies=[Peer],
             responses=error_responses(_BAD_ID, *_AUTH),
             summary="Real-name check of an identity against the population database")
def realname_check(registry: Registry, body: RealnameCheck) -> RealnameResult:
    with refuse_invalid_id():
        return RealnameResult(result=registry.realname_check(body.id_type, body.id_number,
                                                             body.name))


@router.post("/contacts", response_model=ContactResult, dependencies=[Peer],
             responses=error_responses(_BAD_ID, *_AUTH),
             summary="The phone the registry holds for an identity whose name matches "
             "(for the strong real-name login's one-time code; peers only)")
def contact(registry: Registry, body: RealnameCheck) -> ContactResult:
    with refuse_invalid_id():
        return ContactResult(phone=registry.contact(body.id_type, body.id_number, body.name))


@router.post("/residents:batch", response_model=BatchResult, dependencies=[Admin],
             responses=error_responses(_BAD_ID, *_AUTH), summary="Load residents (all or nothing)")
def add_residents(registry: Registry, body: ResidentBatch) -> BatchResult:
    with refuse_invalid_id():
        created, existing = registry.add_residents(NewResident(r.id_type, r.id_number, r.name,
                                                               r.phone) for r in body.residents)
    return BatchResult(created=created, existing=existing)


@router.get("/stats", dependencies=[Admin], responses=error_responses(*_AUTH))
def stats(registry: Registry) -> dict[str, int]:
    return {"residents": registry.count()}
