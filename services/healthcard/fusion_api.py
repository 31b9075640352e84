"""HTTP routes of two-card fusion on the EHC side: binding for channel apps, proofs and
usage records for the e-SSC system, and the operators' fusion jobs."""


from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import and_, select

from ..common.audit import day_report
from ..common.binding import record_of
from ..common.caller_routes import ADMIN, APP_AUTH, INVALID, PEER, Strict
from ..common.errors import DAY, ApiError, error_responses, parse_day
from ..common.faults import FaultSettings
from ..common.usage_sync import card_history
from .fusion import Fusion, Outcome
from .schemas import Binding, BindRequest
from .system import HealthcardSystem
from .tables import audit_heads, bindings, shared_usage, usage_records

NOT_FOUND = (404, "CARD_NOT_FOUND", "no such card for this app")
UNCONFIGURED = (503, "SOCIALCARD_NOT_CONFIGURED", "no e-SSC system configured")
PEER_DOWN = (503, "SOCIALCARD_UNAVAILABLE", "the e-SSC system did not answer")
BIND_REFUSALS = [
    (403, "BINDING_IDENTITY_MISMATCH", "the e-SSC card belongs to someone else"),
    (404, "SSC_CARD_NOT_FOUND", "no such e-SSC card"),
    (409, "SSC_CARD_LOST", "the e-SSC card is lost or pre-lost"),
    (409, "SSC_CARD_CANCELLED", "the e-SSC card is cancelled or void"),
    (409, "SSC_CARD_NOT_ENABLED", "the e-SSC card is not enabled"),
    (409, "BINDING_EXISTS", "either card is bound to another card"),
    (422, "BINDING_REGION_MISMATCH", "region differs from the e-SSC card's"),
    (403, "CARD_LOST", "the EHC is lost"), (403, "CARD_CANCELLED", "the EHC is cancelled"),
]
# a binding's answer is stable data; the settle time keeps a late-committing record
# (PostgreSQL assigns IDs before commit) from being skipped by a cursor that passed it
SHARE_SETTLE_S = 1.0


def fusion_of(hc: HealthcardSystem) -> Fusion:
    if hc.fusion is None:
        raise ApiError(*UNCONFIGURED)
    return hc.fusion


def binding_answer(out: Outcome) -> JSONResponse:
    """200 complete, 202 pending (reconciliation completes it), or the refusal."""
    if out.status == "refused":
        status = next((s for s, c, _ in BIND_REFUSALS if c == out.code), 409)
        raise ApiError(status, out.code, out.message)
    r = out.record
    return JSONResponse({
        "binding_id": out.binding_id, "ehc_card_id": r["ehc_card_id"],
        "ssc_card_no": r["ssc_card_no"], "region": r["region"], "state": r["state"],
        "version": r["version"], "status": out.status},
        status_code=200 if out.status == "complete" else 202)


class FusePage(Strict):
    after: str = Field("", pattern=r"^\d{0,20}$", description="e-SSC card number cursor")
    before: str | None = Field(None, pattern=r"^\d{1,20}$", description="upper bound "
                               "(exclusive) of the card numbers, so that several workers "
                               "can take disjoint ranges")
    limit: int = Field(1000, ge=1, le=2000)


class SharedLookup(Strict):
    source: Literal["essc"] = "essc"
    source_ids: list[Annotated[int, Field(ge=0, le=2**62)]] = Field(max_length=10_000)


class FuseAnswer(BaseModel):
    holders: int
    opened: int
    bound: int
    refused: int
    pending: int
    next_after: str | None


def add_fusion_routes(router: APIRouter, hc: HealthcardSystem, App,  # type: ignore[no-untyped-def]
                      admin_guard, service_guard) -> None:
    cards = hc.cards
    peer = [Depends(service_guard)]
    admin = [Depends(admin_guard)]

    # ---------------------------------------------------------------- channel apps
    @router.post("/cards/{card_id}/binding", response_model=Binding, tags=["channel"],
                 summary="Bind this EHC to the holder's e-SSC (both sides sign and keep it)",
                 responses=error_responses(*APP_AUTH, NOT_FOUND, INVALID, UNCONFIGURED,
                                           PEER_DOWN, *BIND_REFUSALS)
                 | {202: {"description": "pending: the e-SSC side did not answer; "
                          "reconciliation completes or drops it"}})
    async def bind(card_id: str, body: BindRequest, app: App) -> JSONResponse:
        card = cards.owned(card_id, app.app_key)
        return binding_answer(await fusion_of(hc).bind(card, body.ssc_card_no, body.region))

    @router.delete("/cards/{card_id}/binding", response_model=Binding, tags=["channel"],
                   summary="Unbind (a new signed version held by both sides)",
                   responses=error_responses(*APP_AUTH, NOT_FOUND, UNCONFIGURED, PEER_DOWN,
                                             (404, "BINDING_NOT_FOUND", "not bound")))
    async def unbind(card_id: str, app: App) -> JSONResponse:
        card = cards.owned(card_id, app.app_key)
        return binding_answer(await fusion_of(hc).unbind(card))

    @router.get("/cards/{card_id}/binding", response_model=Binding, tags=["channel"],
                responses=error_responses(*APP_AUTH, NOT_FOUND, UNCONFIGURED,
                                          (404, "BINDING_NOT_FOUND", "not bound")))
    def get_binding(card_id: str, app: App) -> dict:
        cards.owned(card_id, app.app_key)
        row = fusion_of(hc).active_binding(card_id)
        return {**row._asdict(), "status": "complete"}

    @router.get("/cards/{card_id}/usage-history", tags=["channel"],
                summary="This card's usage records from both card systems, newest first",
                responses=error_responses(*APP_AUTH, NOT_FOUND, INVALID))
    def usage_history(card_id: str, app: App,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
        cards.owned(card_id, app.app_key)
        with hc.engine.connect() as conn:
            return card_history(conn, "ehc", usage_records, usage_records.c.card_id,
                                shared_usage, shared_usage.c.ehc_card_id, card_id, limit)

    # ---------------------------------------------------------------- the e-SSC system
    @router.get("/peer/signing-key", tags=["peer"], dependencies=peer,
                summary="This system's SM2 public key (binding signatures)",
                responses=error_responses(*PEER, UNCONFIGURED))
    def signing_key() -> dict:
        return {"public_key": fusion_of(hc).public_hex}

    @router.get("/peer/bindings", tags=["peer"], dependencies=peer,
                summary="Our copy of every binding, by binding ID (reconciliation)",
                responses=error_responses(*PEER, INVALID, UNCONFIGURED))
    def list_bindings(after: Annotated[str, Query(max_length=32)] = "",
                      limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> list[dict]:
        f = fusion_of(hc)
        with hc.engine.connect() as conn:
            return [record_of(r) for r in f.store.page(conn, after, limit)]

    @router.get("/peer/bindings/{binding_id}", tags=["peer"], dependencies=peer,
                summary="A binding with both sides' signatures (its proof)",
                responses=error_responses(*PEER, UNCONFIGURED,
                                          (404, "BINDING_NOT_FOUND", "no such binding")))
    def binding_proof(binding_id: str) -> dict:
        return fusion_of(hc).proof(binding_id)

    @router.post("/peer/bindings:check", tags=["peer"], dependencies=peer,
                 summary="Check a binding proof: both signatures, and our own copy",
                 responses=error_responses(
                     *PEER, UNCONFIGURED, PEER_DOWN,
                     (422, "BINDING_RECORD_INVALID", "malformed record"),
                     (422, "BINDING_SIGNATURE_INVALID", "a signature does not hold")))
    async def check_proof(proof: dict[str, Any]) -> dict:
        return await fusion_of(hc).check_proof(proof)

    @router.get("/peer/usage-records", tags=["peer"], dependencies=peer,
                summary="Usage records of bound cards after a cursor (shared both ways)",
                responses=error_responses(*PEER, INVALID))
    def shared_records(after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> list[dict]:
        settled = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=SHARE_SETTLE_S)
        u = usage_records
        with hc.engine.connect() as conn:
            rows = conn.execute(
                select(u, bindings.c.ssc_card_no)
                .join(bindings, and_(bindings.c.ehc_card_id == u.c.card_id,
                                     bindings.c.state == "bound"))
                .where(u.c.id > after_id, u.c.verified_at <= settled)
                .order_by(u.c.id).limit(limit)).all()
        return [{"id": r.id, "ehc_card_id": r.card_id, "ssc_card_no": r.ssc_card_no,
                 "institution_code": r.institution_code, "terminal_id": r.terminal_id,
                 "terminal_type": r.terminal_type, "step": r.step,
                 "code_kind": r.code_kind, "at": r.verified_at.isoformat()} for r in rows]

    # ---------------------------------------------------------------- operators
    @router.post("/admin/fusion/fuse-page", response_model=FuseAnswer, tags=["admin"],
                 dependencies=admin,
                 summary="Auto-open and bind EHCs for one page of unbound e-SSC holders",
                 responses=error_responses(*ADMIN, INVALID, UNCONFIGURED, PEER_DOWN))
    async def fuse_page(body: FusePage) -> dict:
        return await fusion_of(hc).fuse_page(body.after, body.limit, body.before)

    @router.post("/admin/fusion/reconcile", tags=["admin"], dependencies=admin,
                 summary="Finish pending bindings and repair every difference between sides",
                 responses=error_responses(*ADMIN, UNCONFIGURED, PEER_DOWN))
    async def reconcile() -> dict:
        report = await fusion_of(hc).reconcile()
        return {**report.__dict__, "clean": report.clean}

    @router.post("/admin/faults", tags=["admin"], dependencies=admin,
                 summary="Make code fetches and verifications slow or unavailable (drills)",
                 responses=error_responses(*ADMIN, INVALID))
    def faults(body: FaultSettings) -> dict:
        return hc.faults.set(body)

    @router.get("/admin/audit", tags=["admin"], dependencies=admin,
                summary="Verify the day's SM3 chains of usage records (per institution)",
                responses=error_responses(*ADMIN, INVALID))
    def audit(day: Annotated[str, Query(alias="date", pattern=DAY)]) -> dict:
        return day_report(hc.engine, audit_heads, {
            "usage": (usage_records, lambda r: r.institution_code)},
            parse_day(day).strftime("%Y%m%d"))

    @router.post("/admin/fusion/shared-usage:lookup", tags=["admin"], dependencies=admin,
                 summary="Which of the peer's usage records (by their IDs there) arrived here",
                 responses=error_responses(*ADMIN, INVALID))
    def shared_lookup(body: SharedLookup) -> dict:
        with hc.engine.connect() as conn:
            found = conn.execute(select(shared_usage.c.source_id).where(
                shared_usage.c.source == body.source,
                shared_usage.c.source_id.in_(body.source_ids))).scalars().all()
        return {"found": sorted(found)}

    @router.post("/admin/fusion/pull-usage", tags=["admin"], dependencies=admin,
                 summary="Pull the e-SSC side's new usage records of bound cards now",
                 responses=error_responses(*ADMIN, UNCONFIGURED, PEER_DOWN))
    async def pull_usage() -> dict:
        return {"received": await fusion_of(hc).pull_usage()}
