"""HTTP API of the e-SSC system: channel, institution, peer and admin routes."""

from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from ..common.auth import Admin, Peer
from ..common.cards.routes import ADMIN, APP_AUTH, CONSENT, INVALID, PEER, SCOPE, TERM_AUTH
from ..common.cst import CST, refuse_clock_skew
from ..common.errors import Forbidden, error_responses, json_body
from . import usage
from .deps import App, Faults, Socialcard, Term
from .schemas import (
    ClaimRequest,
    IdentityRequest,
    InsuredBatch,
    SocialCard,
    SocialCode,
    SocialVerifyRequest,
)

NOT_FOUND = (404, "SSC_CARD_NOT_FOUND", "no such e-SSC card for this app")
UNUSABLE = [(409, "SSC_CARD_LOST", "lost or pre-lost"),
            (409, "SSC_CARD_CANCELLED", "cancelled or void"),
            (409, "SSC_CARD_NOT_ENABLED", "not enabled")]
FAULT = (503, "SERVICE_UNAVAILABLE", "unavailable (injected fault)")
EHC_DOWN = (503, "HEALTHCARD_UNAVAILABLE", "the EHC system did not answer")


router = APIRouter(prefix="/essc/v1")
PEER_ROUTE = [Peer, Faults]  # the outage drill answers on the peer routes too


# ---------------------------------------------------------------- channel apps
@router.post("/cards", response_model=SocialCard, tags=["channel"],
             summary="Claim the resident's e-SSC (enables a not-enabled card)",
             responses=error_responses(*APP_AUTH, INVALID, CONSENT,
                                       (404, "NOT_INSURED", "no such insured person")))
def claim(sc: Socialcard, body: ClaimRequest, app: App) -> dict:
    return sc.cards.view(sc.cards.claim(body.id_type, body.id_number, body.name, app.app_key,
                                        app.strong_realname))


@router.get("/cards/{ssc_card_no}", response_model=SocialCard, tags=["channel"],
            responses=error_responses(*APP_AUTH, NOT_FOUND))
def get_card(sc: Socialcard, ssc_card_no: str, app: App) -> dict:
    return sc.cards.view(sc.cards.owned(ssc_card_no, app.app_key))


for action in ("report-lost", "unlock", "cancel"):

    def _state_route(sc: Socialcard, ssc_card_no: str, app: App, action: str = action) -> dict:
        return sc.cards.view(sc.cards.change_state(ssc_card_no, app.app_key, action))

    router.add_api_route(f"/cards/{{ssc_card_no}}/{action}", _state_route, methods=["POST"],
                         response_model=SocialCard, tags=["channel"],
                         name="essc_" + action.replace("-", "_"),
                         summary=f"{action.replace('-', ' ').capitalize()} the e-SSC card",
                         responses=error_responses(*APP_AUTH, NOT_FOUND, SCOPE,
                                                   (409, "SSC_CARD_STATE_CONFLICT",
                                                    "not from this state")))


@router.get("/cards/{ssc_card_no}/qrcode", response_model=SocialCode, tags=["channel"],
            summary="The e-SSC's own dynamic code (one use, refreshes like the EHC's)",
            responses=error_responses(*APP_AUTH, NOT_FOUND, *UNUSABLE))
def qrcode(sc: Socialcard, ssc_card_no: str, app: App) -> dict:
    return sc.cards.code(sc.cards.owned(ssc_card_no, app.app_key), datetime.now(CST))


@router.get("/cards/{ssc_card_no}/settlements", tags=["channel"],
            summary="This card's settlements, newest first (the resident's own view)",
            responses=error_responses(*APP_AUTH, NOT_FOUND, INVALID))
def card_settlements(sc: Socialcard, ssc_card_no: str, app: App,
                     limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[dict]:
    sc.cards.owned(ssc_card_no, app.app_key)
    return [sc.settlements.view(r) for r in sc.settlements.of_card(ssc_card_no, limit)]


# ---------------------------------------------------------------- institutions
@router.post("/qrcodes/verify", tags=["institution"], dependencies=[Faults],
             summary="Verify an e-SSC code: the insurance identity and a voucher token",
             responses=error_responses(*TERM_AUTH, INVALID, *UNUSABLE,
                                       (403, "TERMINAL_MISMATCH", "body names another terminal"),
                                       (403, "TERMINAL_REGISTRATION_MISMATCH",
                                        "city or terminal type differs from registration"),
                                       (400, "CLOCK_SKEW", "terminal clock beyond tolerance"),
                                       (422, "QR_MALFORMED", "not an e-SSC code"),
                                       (422, "QR_TAMPERED", "tag does not check out"),
                                       (410, "QR_EXPIRED", "expired"),
                                       (409, "QR_REPLAYED", "already used"),
                                       (404, "SSC_CARD_NOT_FOUND", "no such card")))
def verify(sc: Socialcard, body: SocialVerifyRequest, term: Term) -> dict:
    if body.terminal_id != term.terminal_id or body.institution_code != term.institution_code:
        raise Forbidden("TERMINAL_MISMATCH",
                        "terminal_id / institution_code differ from the signing terminal")
    term.refuse_claims(body.city_code, body.terminal_type)
    now = datetime.now(CST)
    refuse_clock_skew(body.time, now, sc.settings.clock_skew_s)
    return sc.cards.verify_code(body.qr_text, now, term.institution_code, term.terminal_id,
                                body.terminal_type, body.step)


# ---------------------------------------------------------------- the EHC system
@router.post("/peer/bindings:batch", tags=["peer"], dependencies=PEER_ROUTE,
             summary="Check and countersign bindings the EHC side signed",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"type": "object"}}}}},
             responses=error_responses(*PEER, FAULT, EHC_DOWN,
                                       (422, "INVALID_REQUEST", "not a batch"),
                                       (413, "PAYLOAD_TOO_LARGE", "body over 4 MiB"),
                                       (422, "BINDING_RECORD_INVALID", "malformed record"),
                                       (422, "BINDING_SIGNATURE_INVALID",
                                        "forged or mismatched signature")))
async def countersign(sc: Socialcard, request: Request) -> Response:
    # parsed with orjson, not walked by pydantic: a page carries a thousand records
    return Response(orjson.dumps(await sc.fusion.accept(await json_body(request))),
                    media_type="application/json")


@router.post("/peer/identities", tags=["peer"], dependencies=PEER_ROUTE,
             summary="Insurance identity of a bound e-SSC (fused verification)",
             responses=error_responses(*PEER, FAULT, INVALID, *UNUSABLE,
                                       (404, "SSC_CARD_NOT_FOUND", "no such card"),
                                       (409, "BINDING_NOT_ACTIVE", "not bound")))
def identity(sc: Socialcard, body: IdentityRequest) -> dict:
    return sc.fusion.insurance_identity(body.ssc_card_no, body.institution_code)


@router.get("/peer/holders", tags=["peer"], dependencies=PEER_ROUTE,
            summary="Issued e-SSC holders without a bound EHC (auto-opening)",
            responses=error_responses(*PEER, FAULT, INVALID))
def holders(sc: Socialcard, after: Annotated[str, Query(pattern=r"^[0-9]{0,20}$")] = "",
            limit: Annotated[int, Query(ge=1, le=2000)] = 1000,
            before: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None) -> Response:
    return Response(orjson.dumps(sc.fusion.holders(after, limit, before)),
                    media_type="application/json")


# ---------------------------------------------------------------- operators


@router.post("/admin/insured:batch", tags=["admin"], dependencies=[Admin],
             summary="Import insured persons with their issued e-SSC (idempotent; a row with "
             "a malformed ID number is refused on its own, listed in `refused`)",
             responses=error_responses(*ADMIN, INVALID,
                                       (409, "SSC_CARD_EXISTS", "card number taken")))
def import_insured(sc: Socialcard, body: InsuredBatch) -> dict:
    return sc.cards.import_insured([p.model_dump() for p in body.insured])


@router.get("/admin/stats", tags=["admin"], dependencies=[Admin],
            summary="Insured persons by card state and by region; bindings by state",
            responses=error_responses(*ADMIN))
def stats(sc: Socialcard) -> dict:
    return usage.stats(sc.engine)
