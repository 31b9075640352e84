"""HTTP API of the e-SSC system: channel, institution, peer and admin routes."""


from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select

from ..common.audit import day_report
from ..common.binding import record_of
from ..common.caller_routes import (
    ADMIN,
    APP_AUTH,
    INVALID,
    PEER,
    TERM_AUTH,
    add_caller_admin_routes,
    caller_dependencies,
)
from ..common.callers import ChannelApp, Terminal
from ..common.cst import CST, refuse_clock_skew
from ..common.errors import DAY, Forbidden, error_responses, json_body, parse_day
from ..common.faults import FaultSettings
from ..common.usage_sync import card_history
from .schemas import (
    ClaimRequest,
    IdentityRequest,
    InsuredBatch,
    SocialCard,
    SocialCode,
    SocialVerifyRequest,
)
from .settlement_api import add_settlement_routes
from .system import SocialcardSystem
from .tables import audit_heads, bindings, insured, ledger, shared_usage, usage_records

NOT_FOUND = (404, "SSC_CARD_NOT_FOUND", "no such e-SSC card for this app")
UNUSABLE = [(409, "SSC_CARD_LOST", "lost or pre-lost"),
            (409, "SSC_CARD_CANCELLED", "cancelled or void"),
            (409, "SSC_CARD_NOT_ENABLED", "not enabled")]
FAULT = (503, "SERVICE_UNAVAILABLE", "unavailable (injected fault)")
EHC_DOWN = (503, "HEALTHCARD_UNAVAILABLE", "the EHC system did not answer")


def make_router(sc: SocialcardSystem, admin_guard, service_guard) -> APIRouter:  # type: ignore[no-untyped-def]
    router = APIRouter(prefix="/essc/v1")
    cards = sc.cards
    channel_app, terminal = caller_dependencies(sc.callers)
    App = Annotated[ChannelApp, Depends(channel_app)]
    Term = Annotated[Terminal, Depends(terminal)]
    peer = [Depends(service_guard), Depends(sc.faults.apply)]
    admin = [Depends(admin_guard)]

    # ---------------------------------------------------------------- channel apps
    @router.post("/cards", response_model=SocialCard, tags=["channel"],
                 summary="Claim the resident's e-SSC (enables a not-enabled card)",
                 responses=error_responses(*APP_AUTH, INVALID,
                                           (404, "NOT_INSURED", "no such insured person")))
    def claim(body: ClaimRequest, app: App) -> dict:
        return cards.view(cards.claim(body.id_type, body.id_number, body.name, app.app_key))

    @router.get("/cards/{ssc_card_no}", response_model=SocialCard, tags=["channel"],
                responses=error_responses(*APP_AUTH, NOT_FOUND))
    def get_card(ssc_card_no: str, app: App) -> dict:
        return cards.view(cards.owned(ssc_card_no, app.app_key))

    for action in ("report-lost", "unlock", "cancel"):
        def _state_route(ssc_card_no: str, app: App, action: str = action) -> dict:
            return cards.view(cards.change_state(ssc_card_no, app.app_key, action))

        router.add_api_route(
            f"/cards/{{ssc_card_no}}/{action}", _state_route, methods=["POST"],
            response_model=SocialCard, tags=["channel"], name="essc_" + action.replace("-", "_"),
            summary=f"{action.replace('-', ' ').capitalize()} the e-SSC card",
            responses=error_responses(*APP_AUTH, NOT_FOUND,
                                      (409, "SSC_CARD_STATE_CONFLICT", "not from this state")))

    @router.get("/cards/{ssc_card_no}/qrcode", response_model=SocialCode, tags=["channel"],
                summary="The e-SSC's own dynamic code (one use, refreshes like the EHC's)",
                responses=error_responses(*APP_AUTH, NOT_FOUND, *UNUSABLE))
    def qrcode(ssc_card_no: str, app: App) -> dict:
        return cards.code(cards.owned(ssc_card_no, app.app_key), datetime.now(CST))

    @router.get("/cards/{ssc_card_no}/usage-history", tags=["channel"],
                summary="This card's usage records from both card systems, newest first",
                responses=error_responses(*APP_AUTH, NOT_FOUND, INVALID))
    def usage_history(ssc_card_no: str, app: App,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
        cards.owned(ssc_card_no, app.app_key)
        with sc.engine.connect() as conn:
            return card_history(conn, "essc", usage_records, usage_records.c.ssc_card_no,
                                shared_usage, shared_usage.c.ssc_card_no, ssc_card_no, limit)

    @router.get("/cards/{ssc_card_no}/settlements", tags=["channel"],
                summary="This card's settlements, newest first (the resident's own view)",
                responses=error_responses(*APP_AUTH, NOT_FOUND, INVALID))
    def card_settlements(ssc_card_no: str, app: App,
                         limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[dict]:
        cards.owned(ssc_card_no, app.app_key)
        return [sc.settlements.view(r) for r in sc.settlements.of_card(ssc_card_no, limit)]

    # ---------------------------------------------------------------- institutions
    @router.post("/qrcodes/verify", tags=["institution"],
                 dependencies=[Depends(sc.faults.apply)],
                 summary="Verify an e-SSC code: the insurance identity and a voucher token",
                 responses=error_responses(
                     *TERM_AUTH, INVALID, *UNUSABLE,
                     (403, "TERMINAL_MISMATCH", "body names another terminal"),
                     (400, "CLOCK_SKEW", "terminal clock beyond tolerance"),
                     (422, "QR_MALFORMED", "not an e-SSC code"),
                     (422, "QR_TAMPERED", "tag does not check out"),
                     (410, "QR_EXPIRED", "expired"), (409, "QR_REPLAYED", "already used"),
                     (404, "SSC_CARD_NOT_FOUND", "no such card")))
    def verify(body: SocialVerifyRequest, term: Term) -> dict:
        if (body.terminal_id != term.terminal_id
                or body.institution_code != term.institution_code):
            raise Forbidden("TERMINAL_MISMATCH",
                           "terminal_id / institution_code differ from the signing terminal")
        now = datetime.now(CST)
        refuse_clock_skew(body.time, now, sc.settings.clock_skew_s)
        return cards.verify_code(body.qr_text, now, term.institution_code,
                                 term.terminal_id, body.terminal_type, body.step)

    # ---------------------------------------------------------------- the EHC system
    @router.get("/peer/signing-key", tags=["peer"], dependencies=peer,
                summary="This system's SM2 public key (binding signatures)",
                responses=error_responses(*PEER, FAULT))
    def signing_key() -> dict:
        return {"public_key": sc.fusion.public_hex}

    @router.post("/peer/bindings:batch", tags=["peer"], dependencies=peer,
                 summary="Check and countersign bindings the EHC side signed",
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": {"type": "object"}}}}},
                 responses=error_responses(
                     *PEER, FAULT, EHC_DOWN, (422, "INVALID_REQUEST", "not a batch"),
                     (413, "PAYLOAD_TOO_LARGE", "body over 4 MiB"),
                     (422, "BINDING_RECORD_INVALID", "malformed record"),
                     (422, "BINDING_SIGNATURE_INVALID", "forged or mismatched signature")))
    async def countersign(request: Request) -> Response:
        # parsed with orjson, not walked by pydantic: a page carries a thousand records
        return Response(orjson.dumps(await sc.fusion.accept(await json_body(request))),
                        media_type="application/json")

    @router.get("/peer/bindings", tags=["peer"], dependencies=peer,
                summary="Our copy of every binding, by binding ID (reconciliation)",
                responses=error_responses(*PEER, FAULT, INVALID))
    def list_bindings(after: Annotated[str, Query(max_length=32)] = "",
                      limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> list[dict]:
        with sc.engine.connect() as conn:
            return [record_of(r) for r in sc.fusion.store.page(conn, after, limit)]

    @router.get("/peer/bindings/{binding_id}", tags=["peer"], dependencies=peer,
                summary="A binding with both sides' signatures (its proof)",
                responses=error_responses(*PEER, FAULT,
                                          (404, "BINDING_NOT_FOUND", "no such binding")))
    def binding_proof(binding_id: str) -> dict:
        return sc.fusion.proof(binding_id)

    @router.post("/peer/bindings:check", tags=["peer"], dependencies=peer,
                 summary="Check a binding proof: both signatures, and our own copy",
                 responses=error_responses(
                     *PEER, FAULT, EHC_DOWN,
                     (422, "BINDING_RECORD_INVALID", "malformed record"),
                     (422, "BINDING_SIGNATURE_INVALID", "a signature does not hold")))
    async def check_proof(proof: dict[str, Any]) -> dict:
        return await sc.fusion.check_proof(proof)

    @router.post("/peer/identities", tags=["peer"], dependencies=peer,
                 summary="Insurance identity of a bound e-SSC (fused verification)",
                 responses=error_responses(*PEER, FAULT, INVALID, *UNUSABLE,
                                           (404, "SSC_CARD_NOT_FOUND", "no such card"),
                                           (409, "BINDING_NOT_ACTIVE", "not bound")))
    def identity(body: IdentityRequest) -> dict:
        return sc.fusion.insurance_identity(body.ssc_card_no, body.institution_code)

    @router.get("/peer/holders", tags=["peer"], dependencies=peer,
                summary="Issued e-SSC holders without a bound EHC (auto-opening)",
                responses=error_responses(*PEER, FAULT, INVALID))
    def holders(after: Annotated[str, Query(pattern=r"^\d{0,20}$")] = "",
                limit: Annotated[int, Query(ge=1, le=2000)] = 1000,
                before: Annotated[str | None, Query(pattern=r"^\d{1,20}$")] = None,
                ) -> Response:
        return Response(orjson.dumps(sc.fusion.holders(after, limit, before)),
                        media_type="application/json")

    @router.get("/peer/usage-records", tags=["peer"], dependencies=peer,
                summary="Usage records of bound e-SSC cards after a cursor",
                responses=error_responses(*PEER, FAULT, INVALID))
    def shared_records(after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> list[dict]:
        u = usage_records
        with sc.engine.connect() as conn:
            rows = conn.execute(
                select(u, bindings.c.ehc_card_id)
                .join(bindings, (bindings.c.ssc_card_no == u.c.ssc_card_no)
                      & (bindings.c.state == "bound"))
                .where(u.c.id > after_id).order_by(u.c.id).limit(limit)).all()
        return [{"id": r.id, "ehc_card_id": r.ehc_card_id, "ssc_card_no": r.ssc_card_no,
                 "institution_code": r.institution_code, "terminal_id": r.terminal_id,
                 "terminal_type": r.terminal_type, "step": r.step,
                 "code_kind": r.code_kind, "at": r.verified_at.isoformat()} for r in rows]

    add_settlement_routes(router, sc.settlements, sc.idempotency, Term, admin_guard, peer,
                          sc.faults)

    # ---------------------------------------------------------------- operators
    add_caller_admin_routes(router, sc.callers, admin_guard)

    @router.post("/admin/insured:batch", tags=["admin"], dependencies=admin,
                 summary="Import insured persons with their issued e-SSC (idempotent)",
                 responses=error_responses(*ADMIN, INVALID,
                                           (409, "SSC_CARD_EXISTS", "card number taken")))
    def import_insured(body: InsuredBatch) -> dict:
        return cards.import_insured([p.model_dump() for p in body.insured])

    @router.get("/admin/audit", tags=["admin"], dependencies=admin,
                summary="Verify the day's SM3 chains of usage records and ledger postings",
                responses=error_responses(*ADMIN, INVALID))
    def audit(day: Annotated[str, Query(alias="date", pattern=DAY)]) -> dict:
        return day_report(sc.engine, audit_heads, {
            "usage": (usage_records, lambda r: r.institution_code),
            "ledger": (ledger, lambda r: r.settlement_id[:12])},
            parse_day(day).strftime("%Y%m%d"))

    @router.post("/admin/faults", tags=["admin"], dependencies=admin,
                 summary="Make the peer routes slow or unavailable (outage drills)",
                 responses=error_responses(*ADMIN, INVALID))
    def faults(body: FaultSettings) -> dict:
        return sc.faults.set(body)

    @router.post("/admin/fusion/pull-usage", tags=["admin"], dependencies=admin,
                 summary="Pull the EHC side's new usage records of bound cards now",
                 responses=error_responses(*ADMIN, EHC_DOWN))
    async def pull_usage() -> dict:
        return {"received": await sc.fusion.pull_usage()}

    @router.get("/admin/stats", tags=["admin"], dependencies=admin,
                summary="Insured persons by card state and by region; bindings by state",
                responses=error_responses(*ADMIN))
    def stats() -> dict:
        with sc.engine.connect() as conn:
            by_state = conn.execute(select(insured.c.card_state, func.count())
                                    .group_by(insured.c.card_state)).all()
            by_binding = conn.execute(select(bindings.c.state, func.count())
                                      .group_by(bindings.c.state)).all()
            by_region = conn.execute(select(insured.c.region, func.count())
                                     .group_by(insured.c.region)).all()
        return {"cards_by_state": {str(s): int(n) for s, n in by_state},
                "bindings_by_state": {s: int(n) for s, n in by_binding},
                "insured_by_region": {r: int(n) for r, n in by_region}}

    return router
