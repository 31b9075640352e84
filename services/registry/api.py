"""HTTP API of the population registry (called by the card systems, not by the public)."""


from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ..common.auth import Admin, Peer
from ..common.cards.idcard import refuse_invalid_id
from ..common.errors import error_responses
from .births import Birth
from .deps import BirthsDep, DeathsDep, Registry
from .residents import NewResident
from .schemas import (
    BatchResult,
    BirthCheck,
    BirthId,
    BirthIn,
    ContactResult,
    Death,
    DeathIn,
    IssuedId,
    RealnameBatch,
    RealnameBatchResult,
    RealnameCheck,
    RealnameResult,
    ResidentBatch,
)

_BAD_ID = (422, "INVALID_ID_NUMBER", "the ID number is malformed (length, check digit, date)")
_AUTH = [(401, "UNAUTHENTICATED", "no bearer token"), (403, "FORBIDDEN", "token not allowed")]
_BAD_CERT = (422, "INVALID_BIRTH_CERTIFICATE", "one capital letter and nine digits")


router = APIRouter(prefix="/registry/v1", tags=["registry"])


@router.post("/realname-checks", response_model=RealnameResult, dependencies=[Peer],
             responses=error_responses(_BAD_ID, *_AUTH),
             summary="Real-name check of an identity against the population database")
def realname_check(registry: Registry, body: RealnameCheck) -> RealnameResult:
    with refuse_invalid_id():
        return RealnameResult(result=registry.realname_check(body.id_type, body.id_number,
                                                             body.name))


@router.post("/realname-checks:batch", response_model=RealnameBatchResult,
             dependencies=[Peer], responses=error_responses(*_AUTH),
             summary="Real-name checks of many identities (auto-opening), one result per "
             "row; a malformed ID number is 'invalid' on its row, not an error for all")
def realname_checks(registry: Registry, body: RealnameBatch) -> RealnameBatchResult:
    return RealnameBatchResult(results=[registry.realname_result(c.id_type, c.id_number, c.name)
                                        for c in body.checks])


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


# ---------------------------------------------------------------- births
@router.post("/births", status_code=201, dependencies=[Admin],
             responses=error_responses(_BAD_ID, *_AUTH, _BAD_CERT,
                                       (404, "GUARDIAN_NOT_FOUND", "guardian not a resident"),
                                       (409, "BIRTH_EXISTS", "already registered")),
             summary="Register a birth: the newborn by its birth certificate, with its "
             "guardian (before it has an ID number)")
def register_birth(births: BirthsDep, body: BirthIn) -> dict:
    with refuse_invalid_id():
        births.register(Birth(body.birth_cert_no, body.name, body.sex, body.birth_date,
                              body.guardian_id_number))
    return {"birth_cert_no": body.birth_cert_no}


@router.post("/births/{birth_cert_no}/id-number", status_code=204, dependencies=[Admin],
             responses=error_responses(_BAD_ID, *_AUTH, _BAD_CERT,
                                       (404, "BIRTH_NOT_FOUND", "no such birth"),
                                       (409, "ID_ALREADY_ISSUED", "another ID number")),
             summary="The ID number issued to a newborn: it becomes a resident")
def issue_id(births: BirthsDep, birth_cert_no: str, body: IssuedId) -> Response:
    with refuse_invalid_id():
        births.issue_id(birth_cert_no, body.id_number)
    return Response(status_code=204)


@router.post("/births:check", response_model=RealnameResult, dependencies=[Peer],
             responses=error_responses(_BAD_ID, *_AUTH, _BAD_CERT),
             summary="Is this birth registered with this name and guardian? (peers)")
def check_birth(births: BirthsDep, body: BirthCheck) -> RealnameResult:
    with refuse_invalid_id():
        return RealnameResult(result=births.check(body.birth_cert_no, body.name,
                                                  body.guardian_id_number))


@router.get("/births/{birth_cert_no}/id-number", response_model=BirthId, dependencies=[Peer],
            responses=error_responses(*_AUTH, _BAD_CERT,
                                      (404, "BIRTH_NOT_FOUND", "no such birth")),
            summary="The ID number issued for a birth, if any (peers: the EHC upgrade)")
def birth_id(births: BirthsDep, birth_cert_no: str) -> BirthId:
    return BirthId(id_number=births.issued_id(birth_cert_no))


# ---------------------------------------------------------------- deaths
@router.post("/deaths", status_code=201, dependencies=[Admin],
             responses=error_responses(_BAD_ID, *_AUTH,
                                       (404, "RESIDENT_NOT_FOUND", "not a resident"),
                                       (409, "DEATH_ALREADY_REPORTED", "registered already"),
                                       (422, "INVALID_REQUEST", "a date in the future or "
                                        "before the birth")),
             summary="Register a death (civil affairs): the person no longer passes "
             "real-name checks, and the card systems cancel their cards")
def report_death(deaths: DeathsDep, body: DeathIn) -> dict:
    with refuse_invalid_id():
        return {"id": deaths.report(body.id_type, body.id_number, body.died_on)}


@router.get("/deaths", response_model=list[Death], dependencies=[Peer],
            responses=error_responses(*_AUTH),
            summary="Deaths registered after a cursor, in order (peers: the card systems)")
def deaths_after(deaths: DeathsDep, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> list[dict]:
    return deaths.after(after_id, limit)
