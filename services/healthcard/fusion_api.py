"""HTTP routes of two-card fusion on the EHC side: binding for channel apps, proofs and
usage records for the e-SSC system, and the operators' fusion jobs."""

from typing import Annotated, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ..common.auth import Admin
from ..common.cards.routes import ADMIN, APP_AUTH, INVALID, Strict
from ..common.errors import ApiError, error_responses
from . import usage
from .deps import App, Healthcard
from .fusion import Fusion, Outcome
from .schemas import Binding, BindRequest
from .system import HealthcardSystem

NOT_FOUND = (404, "CARD_NOT_FOUND", "no such card for this app")
UNCONFIGURED = (503, "SOCIALCARD_NOT_CONFIGURED", "no e-SSC system configured")
PEER_DOWN = (503, "SOCIALCARD_UNAVAILABLE", "the e-SSC system did not answer")
BIND_REFUSALS = [(403, "BINDING_IDENTITY_MISMATCH", "the e-SSC card belongs to someone else"),
                 (404, "SSC_CARD_NOT_FOUND", "no such e-SSC card"),
                 (409, "SSC_CARD_LOST", "the e-SSC card is lost or pre-lost"),
                 (409, "SSC_CARD_CANCELLED", "the e-SSC card is cancelled or void"),
                 (409, "SSC_CARD_NOT_ENABLED", "the e-SSC card is not enabled"),
                 (409, "BINDING_EXISTS", "either card is bound to another card"),
                 (422, "BINDING_REGION_MISMATCH", "region differs from the e-SSC card's"),
                 (403, "CARD_LOST", "the EHC is lost"),
                 (403, "CARD_CANCELLED", "the EHC is cancelled")]


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
    return JSONResponse({"binding_id": out.binding_id, "ehc_card_id": r["ehc_card_id"],
                         "ssc_card_no": r["ssc_card_no"], "region": r["region"],
                         "state": r["state"], "version": r["version"], "status": out.status},
                        status_code=200 if out.status == "complete" else 202)


class FusePage(Strict):
    after: str = Field("", pattern=r"^[0-9]{0,20}$", description="e-SSC card number cursor")
    before: str | None = Field(None, pattern=r"^[0-9]{1,20}$",
                               description="upper bound "
                               "(exclusive) of the card numbers, so that several workers "
                               "can take disjoint ranges")
    limit: int = Field(1000, ge=1, le=2000)


class SharedLookup(Strict):
    source: Literal["essc"] = "essc"
    source_ids: list[Annotated[int, Field(ge=0, le=2**62)]] = Field(max_length=10_000)


class Refusal(BaseModel):
    ssc_card_no: str
    reason: str = Field(description="INVALID_ID_NUMBER, REALNAME_MISMATCH, "
                        "REALNAME_UNVERIFIED, CARD_LOST, CARD_CANCELLED, or the binding's "
                        "refusal code")


class FuseAnswer(BaseModel):
    holders: int
    opened: int
    bound: int
    refused: int
    pending: int
    refusals: list[Refusal] = Field(description="each refused holder with its reason")
    next_after: str | None


router = APIRouter(prefix="/ehc/v1")


# ---------------------------------------------------------------- channel apps
@router.post("/cards/{card_id}/binding", response_model=Binding, tags=["channel"],
             summary="Bind this EHC to the holder's e-SSC (both sides sign and keep it)",
             responses=error_responses(*APP_AUTH, NOT_FOUND, INVALID, UNCONFIGURED, PEER_DOWN,
                                       *BIND_REFUSALS)
             | {202: {"description": "pending: the e-SSC side did not answer; "
                      "reconciliation completes or drops it"}})
async def bind(hc: Healthcard, card_id: str, body: BindRequest, app: App) -> JSONResponse:
    card = hc.cards.owned(card_id, app.app_key, manage=True)
    return binding_answer(await fusion_of(hc).bind(card, body.ssc_card_no, body.region))


@router.delete("/cards/{card_id}/binding", response_model=Binding, tags=["channel"],
               summary="Unbind (a new signed version held by both sides)",
               responses=error_responses(*APP_AUTH, NOT_FOUND, UNCONFIGURED, PEER_DOWN,
                                         (404, "BINDING_NOT_FOUND", "not bound")))
async def unbind(hc: Healthcard, card_id: str, app: App) -> JSONResponse:
    card = hc.cards.owned(card_id, app.app_key, manage=True)
    return binding_answer(await fusion_of(hc).unbind(card))


@router.get("/cards/{card_id}/binding", response_model=Binding, tags=["channel"],
            responses=error_responses(*APP_AUTH, NOT_FOUND, UNCONFIGURED,
                                      (404, "BINDING_NOT_FOUND", "not bound")))
def get_binding(hc: Healthcard, card_id: str, app: App) -> dict:
    hc.cards.owned(card_id, app.app_key)
    row = fusion_of(hc).active_binding(card_id)
    return {**row._asdict(), "status": "complete"}


# ---------------------------------------------------------------- the e-SSC system
# ---------------------------------------------------------------- operators
@router.post("/admin/fusion/fuse-page", response_model=FuseAnswer, tags=["admin"],
             dependencies=[Admin],
             summary="Auto-open and bind EHCs for one page of unbound e-SSC holders",
             responses=error_responses(*ADMIN, INVALID, UNCONFIGURED, PEER_DOWN))
async def fuse_page(hc: Healthcard, body: FusePage) -> dict:
    return await fusion_of(hc).fuse_page(body.after, body.limit, body.before)


@router.post("/admin/fusion/reconcile", tags=["admin"], dependencies=[Admin],
             summary="Finish pending bindings and repair every difference between sides",
             responses=error_responses(*ADMIN, UNCONFIGURED, PEER_DOWN))
async def reconcile(hc: Healthcard) -> dict:
    report = await fusion_of(hc).reconcile()
    return {**report.__dict__, "clean": report.clean}


@router.post("/admin/fusion/shared-usage:lookup", tags=["admin"], dependencies=[Admin],
             summary="Which of the peer's usage records (by their IDs there) arrived here",
             responses=error_responses(*ADMIN, INVALID))
def shared_lookup(hc: Healthcard, body: SharedLookup) -> dict:
    return {"found": usage.shared_found(hc.engine, body.source, body.source_ids)}

