"""HTTP API of the card-management system: channel, institution and admin routes."""

import io
from collections.abc import MutableMapping
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

import orjson
import segno
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..common.auth import Admin
from ..common.cards.callers import ChannelApp
from ..common.cards.idcard import parse_resident_id, refuse_invalid_id
from ..common.cards.routes import ADMIN, APP_AUTH, CONSENT, INVALID, SCOPE, TERM_AUTH
from ..common.cst import digits as cst_digits
from ..common.errors import ApiError, Conflict, Invalid, NotFound, TooLarge, error_responses
from ..common.fastpath import Headers, HotRoute
from . import qrcodes, usage
from .cards import ID_TYPE_BIRTH_CERTIFICATE, refuse_unusable
from .deps import App, Faults, Healthcard, Term
from .fusion_api import UNCONFIGURED, fusion_of
from .schemas import (
    ApplyAnswer,
    ApplyRequest,
    BindTemporaryRequest,
    Card,
    FamilyMember,
    FamilyRequest,
    LookupRequest,
    ModifyRequest,
    NewbornRequest,
    PatientLinkRequest,
    QrCode,
    TemporaryAnswer,
    TemporaryRequest,
    UsageRecord,
    VerifyAnswer,
    VerifyRequest,
)
from .system import HealthcardSystem
from .verify import Refresh

MAX_VERIFY_BODY = 4096
NOT_FOUND = (404, "CARD_NOT_FOUND", "no such card for this caller")
BAD_ID = (422, "INVALID_ID_NUMBER", "malformed ID number")


def resident_facts(id_type: str, id_number: str) -> tuple[str, str | None, object]:
    """(normalised number, sex, birth date) of a resident ID; other types as given."""
    if id_type != "01":
        return id_number, None, None
    with refuse_invalid_id():
        parsed = parse_resident_id(id_number)
    return parsed.number, parsed.sex, parsed.birth_date


def render(text: str, fmt: str) -> Response:
    qr = segno.make(text, error="m")
    buf = io.BytesIO()
    if fmt == "svg":
        qr.save(buf, kind="svg", scale=4)
        return Response(buf.getvalue(), media_type="image/svg+xml")
    qr.save(buf, kind="png", scale=4)
    return Response(buf.getvalue(), media_type="image/png")


async def verify_payload(hc: HealthcardSystem, scope: MutableMapping[str, Any],
                         body: bytes) -> bytes:
    """The whole hot path from raw request to JSON answer (used by both paths)."""
    await hc.faults.apply()
    term, admission = await hc.callers.authenticate_scan(
        Headers(scope["headers"]), "POST", scope["path"],
        scope.get("query_string", b"").decode("latin-1"), body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid("INVALID_REQUEST", "body is not JSON") from exc
    rid = scope.get("state", {}).get("request_id", "")
    answer = await hc.verifier.verify_async(term, data, rid, admission)
    binding = answer.pop("binding", None)
    if binding is not None and hc.fusion is not None:
        answer.update(await hc.fusion.insurance_identity(binding, term.institution_code))
    return orjson.dumps(answer)


async def verify_hot(scope: dict, body: bytes) -> bytes:
    """The verify route on the fast path (below the framework): the app's EHC system."""
    return await verify_payload(scope["app"].state.systems["healthcard"], scope, body)


VERIFY_ROUTE = HotRoute("POST", "/ehc/v1/qrcodes/verify", verify_hot, MAX_VERIFY_BODY)
CODE_KINDS = ("static", "dynamic", "fused")


def code_answer(hc: HealthcardSystem, card_id: str, kind: str) -> dict[str, str | int]:
    """A card's code of ``kind`` (its checks done by the caller)."""
    if kind == "static":
        return {"qr_text": qrcodes.static_code(card_id), "kind": "static"}
    key = hc.keystore.active("protection")
    expiry = datetime.now(qrcodes.CST) + timedelta(seconds=hc.settings.dynamic_code_validity_s)
    if kind == "fused":
        text = qrcodes.hardened_dynamic_code(card_id, key, expiry, fused=True)
    elif hc.settings.qr_format == "hardened":
        text = qrcodes.hardened_dynamic_code(card_id, key, expiry)
    else:
        text = qrcodes.national_dynamic_code(card_id, key, expiry)
    return {"qr_text": text, "kind": kind, "expires_at": cst_digits(expiry),
            "refresh_after_s": hc.settings.dynamic_code_validity_s}


def _code_query(scope: dict) -> dict[str, str] | None:
    """The refresh's query when the fast path serves it (JSON, a known kind, nothing
    else); None leaves the request to the framework (images, and its own refusals).
    Read once a request: the fast path's ``claims`` keeps it in the scope."""
    if "ehc.code_query" in scope:
        return scope["ehc.code_query"]
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                      keep_blank_values=True)
    query = dict(pairs)
    if len(query) != len(pairs) or not set(query) <= {"kind", "format"} \
            or query.get("format", "json") != "json" \
            or query.get("kind", "dynamic") not in CODE_KINDS:
        return None
    scope["ehc.code_query"] = query
    return query


async def qrcode_hot(scope: dict, body: bytes) -> bytes:
    """The code refresh on the fast path: the drill, the app's signature in memory, its
    nonce and the card's checks in the scans' batch transaction, the code made here."""
    hc: HealthcardSystem = scope["app"].state.systems["healthcard"]
    await hc.faults.apply()
    app, admission = await hc.callers.authenticate_app_hot(
        Headers(scope["headers"]), "GET", scope["path"],
        scope.get("query_string", b"").decode("latin-1"), body)
    kind = (_code_query(scope) or {}).get("kind", "dynamic")
    card_id = scope["path"].split("/")[4]
    await hc.verifier.refresh_async(Refresh(card_id, app.app_key,
                                            kind == "fused" and hc.fusion is not None,
                                            admission))
    if kind == "fused" and hc.fusion is None:
        raise ApiError(*UNCONFIGURED)
    return orjson.dumps(code_answer(hc, card_id, kind))


QRCODE_ROUTE = HotRoute("GET", "/ehc/v1/cards/{card_id}/qrcode", qrcode_hot, MAX_VERIFY_BODY,
                        pattern=r"/ehc/v1/cards/[^/]{1,128}/qrcode",
                        claims=lambda scope: _code_query(scope) is not None)


router = APIRouter(prefix="/ehc/v1")


async def checked_apply(hc: HealthcardSystem, body: ApplyRequest, issuer: str,
                        app: ChannelApp) -> tuple[Any, bool]:
    """A card applied for after the real-name check (the registry answers over HTTP)."""
    number, sex, birth = resident_facts(body.id_type, body.id_number)
    result = await hc.registry.realname_check(body.id_type, number, body.name)
    if result != "match":
        raise Invalid("REALNAME_MISMATCH" if result == "no_match" else "REALNAME_UNVERIFIED",
                      "identity and name do not pass the real-name check")
    return hc.cards.apply(id_type=body.id_type, id_number=number, name=body.name, sex=sex,
                          birth_date=birth, phone=body.phone, issuer=issuer,
                          app_key=app.app_key, strong=app.strong_realname)


# ---------------------------------------------------------------- channel routes
@router.post("/cards", response_model=ApplyAnswer, tags=["channel"],
             summary="Apply for a card (idempotent; re-apply restores a cancelled card)",
             responses=error_responses(*APP_AUTH, BAD_ID, INVALID, CONSENT,
                                       (422, "REALNAME_MISMATCH",
                                        "identity and name do not match the registry"),
                                       (503, "REGISTRY_UNAVAILABLE",
                                        "real-name source did not answer")))
async def apply(hc: Healthcard, body: ApplyRequest, app: App) -> dict:
    row, created = await checked_apply(hc, body, app.app_key, app)
    return {**hc.cards.view(row), "created": created}


@router.post("/cards/lookup", response_model=Card, tags=["channel"],
             summary="Registration query by identity",
             responses=error_responses(*APP_AUTH, NOT_FOUND, BAD_ID, INVALID))
def lookup(hc: Healthcard, body: LookupRequest, app: App) -> dict:
    number, _, _ = resident_facts(body.id_type, body.id_number)
    return hc.cards.view(hc.cards.lookup(body.id_type, number, app.app_key))


@router.get("/cards/{card_id}", response_model=Card, tags=["channel"],
            responses=error_responses(*APP_AUTH, NOT_FOUND))
def get_card(hc: Healthcard, card_id: str, app: App) -> dict:
    return hc.cards.view(hc.cards.owned(card_id, app.app_key))


@router.patch("/cards/{card_id}", response_model=Card, tags=["channel"],
              summary="Modify phone or name (a new name passes the real-name check)",
              responses=error_responses(*APP_AUTH, NOT_FOUND, INVALID, SCOPE,
                                        (422, "REALNAME_MISMATCH", "name fails check")))
async def modify(hc: Healthcard, card_id: str, body: ModifyRequest, app: App) -> dict:
    row = hc.cards.owned(card_id, app.app_key, manage=True)
    if body.name is not None:
        number = hc.cards.cipher.decrypt(row.id_number_enc)
        if await hc.registry.realname_check(row.id_type, number, body.name) != "match":
            raise Invalid("REALNAME_MISMATCH", "new name fails the real-name check")
    return hc.cards.view(hc.cards.modify(card_id, app.app_key, phone=body.phone, name=body.name))


for action in ("report-lost", "unlock", "cancel"):

    def _state_route(hc: Healthcard, card_id: str, app: App, action: str = action) -> dict:
        return hc.cards.view(hc.cards.change_state(card_id, app.app_key, action))

    router.add_api_route(f"/cards/{{card_id}}/{action}", _state_route, methods=["POST"],
                         response_model=Card, tags=["channel"], name=action.replace("-", "_"),
                         summary=f"{action.replace('-', ' ').capitalize()} the card",
                         responses=error_responses(*APP_AUTH, NOT_FOUND, SCOPE,
                                                   (409, "CARD_STATE_CONFLICT",
                                                    "not allowed from state")))


@router.get("/cards/{card_id}/qrcode", tags=["channel"], dependencies=[Faults],
            response_model=QrCode, summary="Static or dynamic code, as text or rendered PNG/SVG",
            responses={**error_responses(*APP_AUTH, NOT_FOUND,
                                         (404, "BINDING_NOT_FOUND", "fused: not bound"),
                                         (503, "SERVICE_UNAVAILABLE", "injected fault"),
                                         (403, "CARD_LOST", "card lost"),
                                         (403, "CARD_CANCELLED", "card cancelled")),
                       200: {"content": {"image/png": {}, "image/svg+xml": {}}}})
def qrcode(hc: Healthcard, card_id: str, app: App,
           kind: Literal["static", "dynamic", "fused"] = "dynamic",
           format: Literal["json", "png", "svg"] = "json") -> Response:
    """Served by the fast path (``QRCODE_ROUTE``) as JSON; the images and the refusals of
    a bad query come from here, with the same checks."""
    row = hc.cards.owned(card_id, app.app_key)
    refuse_unusable(row.state)
    if kind == "fused":
        fusion_of(hc).active_binding(card_id)
    answer = code_answer(hc, card_id, kind)
    if format != "json":
        return render(str(answer["qr_text"]), format)
    return Response(orjson.dumps(answer), media_type="application/json")


@router.post("/cards/{card_id}/family", response_model=FamilyMember, tags=["channel"],
             summary="Apply for and add a family member's card",
             responses=error_responses(*APP_AUTH, NOT_FOUND, BAD_ID, INVALID, CONSENT, SCOPE,
                                       (422, "FAMILY_SELF", "own card"),
                                       (422, "REALNAME_MISMATCH", "member fails check")))
async def add_family(hc: Healthcard, card_id: str, body: FamilyRequest, app: App) -> dict:
    hc.cards.owned(card_id, app.app_key, manage=True)
    member, _ = await checked_apply(hc, body, app.app_key, app)
    hc.cards.add_family(card_id, app.app_key, member, body.relation)
    return {**hc.cards.view(member), "relation": body.relation}


@router.get("/cards/{card_id}/family", response_model=list[FamilyMember], tags=["channel"],
            responses=error_responses(*APP_AUTH, NOT_FOUND))
def list_family(hc: Healthcard, card_id: str, app: App) -> list[dict]:
    return [{**hc.cards.view(r), "relation": rel} for r,
            rel in hc.cards.list_family(card_id, app.app_key)]


@router.delete("/cards/{card_id}/family/{member_card_id}", status_code=204, tags=["channel"],
               responses=error_responses(*APP_AUTH, NOT_FOUND, SCOPE,
                                         (404, "FAMILY_MEMBER_NOT_FOUND", "not a member")))
def remove_family(hc: Healthcard, card_id: str, member_card_id: str, app: App) -> Response:
    hc.cards.remove_family(card_id, app.app_key, member_card_id)
    return Response(status_code=204)


@router.post("/cards/{card_id}/newborns", response_model=FamilyMember, tags=["channel"],
             summary="A guardian applies for their newborn's card with the birth "
             "certificate (registered in the registry's birth event); it joins the "
             "guardian's family list",
             responses=error_responses(*APP_AUTH, NOT_FOUND, INVALID, CONSENT, SCOPE,
                                       (422, "GUARDIAN_NOT_RESIDENT",
                                        "the guardian's card is not under a resident ID"),
                                       (422, "REALNAME_MISMATCH", "no such registered "
                                        "birth with this name and guardian"),
                                       (503, "REGISTRY_UNAVAILABLE", "no answer")))
async def add_newborn(hc: Healthcard, card_id: str, body: NewbornRequest, app: App) -> dict:
    guardian = hc.cards.owned(card_id, app.app_key, manage=True)
    if guardian.id_type != "01":
        raise Invalid("GUARDIAN_NOT_RESIDENT", "the guardian's card must be under a "
                      "resident ID number")
    try:
        born = date.fromisoformat(body.birth_date)
    except ValueError as exc:
        raise Invalid("INVALID_REQUEST", "birth_date is not a date") from exc
    guardian_id = hc.cards.cipher.decrypt(guardian.id_number_enc)
    if await hc.registry.birth_check(body.birth_cert_no, body.name, guardian_id) != "match":
        raise Invalid("REALNAME_MISMATCH", "no registered birth with this certificate, "
                      "name and guardian")
    row = hc.cards.open_newborn(card_id, app.app_key, app.strong_realname,
                                body.birth_cert_no, body.name, body.sex, born)
    return {**hc.cards.view(row), "relation": "child"}


@router.post("/cards/{card_id}/upgrade", response_model=Card, tags=["channel"],
             summary="A newborn's card takes the resident ID number issued to it, in place "
             "(same card ID, EMPI, history and family)",
             responses=error_responses(*APP_AUTH, NOT_FOUND, SCOPE,
                                       (409, "NOT_A_NEWBORN_CARD", "already under an ID"),
                                       (409, "ID_NOT_ISSUED", "the registry has no ID yet"),
                                       (409, "CARD_EXISTS_FOR_ID", "another card holds it"),
                                       (503, "REGISTRY_UNAVAILABLE", "no answer")))
async def upgrade(hc: Healthcard, card_id: str, app: App) -> dict:
    row = hc.cards.owned(card_id, app.app_key, manage=True)
    if row.id_type != ID_TYPE_BIRTH_CERTIFICATE:
        raise Conflict("NOT_A_NEWBORN_CARD", "the card is already under an ID number")
    issued = await hc.registry.birth_id(hc.cards.cipher.decrypt(row.id_number_enc))
    if issued is None:
        raise Conflict("ID_NOT_ISSUED", "the registry holds no ID number for this birth yet")
    return hc.cards.view(hc.cards.upgrade_to_resident_id(card_id, issued))


# ---------------------------------------------------------------- institution routes
verify_errors = error_responses(*TERM_AUTH,
                                (403, "TERMINAL_MISMATCH",
                                 "body names another terminal or institution"),
                                (403, "TERMINAL_REGISTRATION_MISMATCH",
                                 "city or terminal type differs from the registration"),
                                (403, "STATIC_CODE_REFUSED",
                                 "static code from a terminal that reads no physical cards"),
                                (400, "CLOCK_SKEW", "terminal clock beyond tolerance"),
                                (422, "QR_MALFORMED", "not an EHC code"),
                                (422, "QR_TAMPERED", "protected block fails"),
                                (422, "QR_FORMAT_NOT_ACCEPTED",
                                 "national/hardened format not accepted"),
                                (410, "QR_EXPIRED", "dynamic code expired"),
                                (409, "QR_REPLAYED", "verification limit of this code reached"),
                                (404, "CARD_NOT_FOUND", "no card with this ID"),
                                (409, "BINDING_NOT_ACTIVE", "fused code of a card no longer bound"),
                                (403, "CARD_LOST", "card reported lost"),
                                (403, "CARD_CANCELLED", "card cancelled"),
                                (413, "PAYLOAD_TOO_LARGE", "body over 4 KiB"),
                                (503, "SERVICE_UNAVAILABLE", "unavailable (injected fault)"),
                                (422, "INVALID_REQUEST", "missing or malformed field"))


VERIFY_DESCRIPTION = """
A hospital terminal sends the text of a code it scanned (from the resident's phone or a
card) and the step of care; the card network answers who the resident is and records the
use. The request is signed by the terminal (headers `X-EHC-Key`, `X-EHC-Timestamp` within
300 s, `X-EHC-Nonce` used once, `X-EHC-Signature`; the SDK's `TerminalClient.verify` does
it), and `terminal_time` is the terminal's clock (`yyyyMMddHHmmss`, China Standard Time).

- A **dynamic** code (60 s) or a **fused** code verifies at most 3 times; a **static**
  code (a printed or physical card) only at terminals registered as card readers.
- A **fused** code answers the EHC identity and the e-SSC (insurance) identity; at the
  payment step (10105) the answer carries the voucher token (`ec_token`) that opens one
  settlement. When the e-SSC side does not answer in time the EHC identity comes back
  alone, marked `partial`.
- Every answer names the usage record it wrote (`usage_record_id`); a refusal writes
  nothing and says why in a stable `code` (below).
"""


@router.post("/qrcodes/verify", tags=["institution"], response_model=VerifyAnswer,
             summary="Verify a scanned code online; writes one usage record",
             description=VERIFY_DESCRIPTION,
             responses=verify_errors,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": VerifyRequest.model_json_schema()}}}})
async def verify(hc: Healthcard, request: Request) -> Response:
    """Served by the fast path (``verify_route``); kept here for the OpenAPI document
    and as the framework path the fast path must agree with."""
    body = await request.body()
    if len(body) > MAX_VERIFY_BODY:
        raise TooLarge("PAYLOAD_TOO_LARGE", "verify body is limited to 4 KiB")
    return Response(await verify_payload(hc, request.scope, body), media_type="application/json")


@router.post("/temporary-cards", response_model=TemporaryAnswer, tags=["institution"],
             summary="Issue a temporary card (no ID document, e.g. emergencies)",
             responses=error_responses(*TERM_AUTH, INVALID))
def temporary(hc: Healthcard, body: TemporaryRequest, term: Term) -> dict:
    row = hc.cards.issue_temporary(term.institution_code, body.name, body.sex)
    return {"card_id": row.card_id, "qr_text": qrcodes.temporary_code(row.card_id)}


@router.post("/temporary-cards/{temp_card_id}/bind", status_code=204, tags=["institution"],
             summary="Bind a temporary card to the patient's card",
             responses=error_responses(*TERM_AUTH, INVALID,
                                       (404, "TEMP_CARD_NOT_FOUND", "not issued here"),
                                       (409, "TEMP_CARD_BOUND", "already bound"),
                                       (404, "CARD_NOT_FOUND", "the code's card does not exist"),
                                       (403, "CARD_LOST", "the code's card is lost"),
                                       (403, "STATIC_CODE_REFUSED", "static code, no reader"),
                                       (410, "QR_EXPIRED", "the code has expired"),
                                       (422, "QR_TAMPERED", "the code does not verify"),
                                       (422, "QR_MALFORMED", "not a card code")))
def bind_temporary(hc: Healthcard, temp_card_id: str, body: BindTemporaryRequest,
                   term: Term) -> Response:
    code, _ = hc.verifier.decode(body.qr_text, term, datetime.now(qrcodes.CST))
    if code.kind == "temporary":
        raise Invalid("QR_MALFORMED", "bind to a real card, not a temporary one")
    hc.cards.bind_temporary(temp_card_id, code.card_id, term.institution_code)
    return Response(status_code=204)


@router.post("/patient-links", status_code=204, tags=["institution"],
             summary="Bind the hospital's local patient ID to a card",
             responses=error_responses(*TERM_AUTH, INVALID,
                                       (409, "PATIENT_LINK_CONFLICT", "linked otherwise")))
def link_patient(hc: Healthcard, body: PatientLinkRequest, term: Term) -> Response:
    hc.cards.link_patient(term.institution_code, body.local_patient_id, body.card_id)
    return Response(status_code=204)


@router.get("/patient-links/{local_patient_id}", tags=["institution"],
            responses=error_responses(*TERM_AUTH, (404, "PATIENT_LINK_NOT_FOUND", "not linked")))
def linked_card(hc: Healthcard, local_patient_id: str, term: Term) -> dict:
    return {"card_id": hc.cards.linked_card(term.institution_code, local_patient_id)}


@router.get("/usage-records", response_model=list[UsageRecord], tags=["institution"],
            summary="This institution's usage records (and only its own), by cursor",
            responses=error_responses(*TERM_AUTH, INVALID))
def list_usage(hc: Healthcard, term: Term, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    return usage.institution_records(hc.engine, term.institution_code, after_id, limit)


@router.get("/time", tags=["public"], summary="Server time (terminals check clock skew)")
def server_time() -> dict:
    now = datetime.now(qrcodes.CST)
    return {"time": now.strftime("%Y%m%d%H%M%S"), "epoch": now.timestamp(), "utc_offset": "+08:00"}


# ---------------------------------------------------------------- admin routes
# (the caller registry's routes: services.common.cards.routes, included by the app)


@router.get("/admin/keys", tags=["admin"], dependencies=[Admin],
            summary="Key metadata (never key material)", responses=error_responses(*ADMIN))
def list_keys(hc: Healthcard) -> list[dict]:
    return hc.keystore.describe()


@router.post("/admin/keys/{purpose}/rotate", tags=["admin"], dependencies=[Admin],
             responses=error_responses(*ADMIN, (422, "INVALID_KEY_PURPOSE", "unknown")))
def rotate(hc: Healthcard, purpose: str) -> dict:
    try:
        return {"key_id": hc.keystore.rotate(purpose)}
    except ValueError as exc:
        raise Invalid("INVALID_KEY_PURPOSE", str(exc)) from exc


@router.post("/admin/keys/{key_id}/retire", status_code=204, tags=["admin"], dependencies=[Admin],
             responses=error_responses(*ADMIN, (404, "KEY_NOT_FOUND", "unknown key"),
                                       (409, "KEY_ACTIVE", "rotate first")))
def retire(hc: Healthcard, key_id: str) -> Response:
    try:
        hc.keystore.retire(key_id)
    except LookupError as exc:
        raise NotFound("KEY_NOT_FOUND", "no such key") from exc
    except ValueError as exc:
        raise Conflict("KEY_ACTIVE", str(exc)) from exc
    return Response(status_code=204)


@router.get("/admin/stats/issuance", tags=["admin"], dependencies=[Admin],
            summary="Cards issued per issuer (app or institution)",
            responses=error_responses(*ADMIN))
def issuance(hc: Healthcard) -> dict[str, int]:
    return hc.cards.issuance_counts()
