"""The routes both card systems offer as the two sides of the binding, written once:
each includes :data:`peer_router` and :data:`admin_router` under its prefix with
``Depends(SideOf(system))`` (the e-SSC side adds its outage drill to the peer routes).

A side is a system object with ``engine``, ``faults``, ``fusion`` (its binding side, or
None when no peer is configured) and ``usage`` (its module of usage-record queries)."""

from __future__ import annotations

from types import ModuleType
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..auth import Admin, DataReader, Peer
from ..db import Export, export_page
from ..errors import DAY, Unavailable, error_responses, parse_day
from .callers import ChannelApp
from .consent import Consent
from .consent_routes import signed_app
from .faults import FaultSettings
from .routes import ADMIN, APP_AUTH, INVALID, PEER, Strict, SystemDependency
from .seals import seal_and_export, verify_sealed

UNCONFIGURED = (503, "SOCIALCARD_NOT_CONFIGURED", "no e-SSC system configured (EHC side)")
PEER_DOWN = [(503, "SOCIALCARD_UNAVAILABLE", "the e-SSC system did not answer (EHC side)"),
             (503, "HEALTHCARD_UNAVAILABLE", "the EHC system did not answer (e-SSC side)")]
FAULT = (503, "SERVICE_UNAVAILABLE", "unavailable (the outage drill)")


class CardSide:
    """What both card systems are, as seen by the shared routes: their usage queries
    (the module ``usage`` of the system's package, set by each subclass) and who holds
    each card."""

    usage: ClassVar[ModuleType]
    exports: ClassVar[dict[str, Export]]  # what the data resources layer may read
    cards: Any

    @property
    def consent(self) -> Consent:
        """Which apps hold each card, and the grants that add one."""
        return self.cards.consent


class SideOf(SystemDependency):
    """Names the card system the shared routes act on."""

    def __call__(self, request: Request) -> None:
        request.state.side = self.of(request)
        request.state.callers = request.state.side.callers


def side(request: Request) -> Any:
    return request.state.side


Side = Annotated[Any, Depends(side)]
SignedApp = Annotated[ChannelApp, Depends(signed_app)]


class SealIn(Strict):
    chain: str = Field(pattern=r"^[a-z]{1,16}$")
    institution_code: str = Field(pattern=r"^[0-9A-Z]{12}$")
    day: str = Field(pattern=r"^[0-9]{8}$")
    seq: int = Field(ge=1, le=2**31 - 1)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(pattern=r"^[0-9a-f]{16,160}$")


class SealBatch(Strict):
    seals: list[SealIn] = Field(max_length=100_000)


def fusion_of(system: Any) -> Any:
    if system.fusion is None:
        raise Unavailable(*UNCONFIGURED[1:])
    return system.fusion


peer_router = APIRouter(tags=["peer"], dependencies=[Peer])


@peer_router.get("/peer/signing-key", summary="This system's SM2 public key (binding "
                 "signatures)", responses=error_responses(*PEER, UNCONFIGURED, FAULT))
def signing_key(s: Side) -> dict:
    return {"public_key": fusion_of(s).public_hex}


@peer_router.get("/peer/bindings", summary="Our copy of every binding, by binding ID "
                 "(reconciliation)", responses=error_responses(*PEER, INVALID, UNCONFIGURED,
                                                               FAULT))
def list_bindings(s: Side, after: Annotated[str, Query(max_length=32)] = "",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> list[dict]:
    return fusion_of(s).records(after, limit)


@peer_router.get("/peer/bindings/{binding_id}", summary="A binding with both sides' "
                 "signatures (its proof)",
                 responses=error_responses(*PEER, UNCONFIGURED, FAULT,
                                           (404, "BINDING_NOT_FOUND", "no such binding")))
def binding_proof(s: Side, binding_id: str) -> dict:
    return fusion_of(s).proof(binding_id)


@peer_router.post("/peer/bindings:check", summary="Check a binding proof: both "
                  "signatures, and our own copy",
                  responses=error_responses(*PEER, UNCONFIGURED, *PEER_DOWN, FAULT,
                                            (422, "BINDING_RECORD_INVALID", "malformed record"),
                                            (422, "BINDING_SIGNATURE_INVALID",
                                             "a signature does not hold")))
async def check_proof(s: Side, proof: dict[str, Any]) -> dict:
    return await fusion_of(s).check_proof(proof)


@peer_router.get("/peer/usage-records", summary="Usage records of bound cards after a "
                 "cursor (shared both ways)",
                 responses=error_responses(*PEER, INVALID, FAULT))
def shared_records(s: Side, after_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> list[dict]:
    return s.usage.bound_records(s.engine, after_id, limit)


@peer_router.post("/peer/audit-seals", summary="Hold the other system's signed audit "
                  "heads (the longest of each chain; a lower one never replaces it)",
                  responses=error_responses(*PEER, INVALID, UNCONFIGURED, *PEER_DOWN, FAULT))
async def receive_seals(s: Side, body: SealBatch) -> dict:
    key = await fusion_of(s).peer_key()
    seals = [seal.model_dump() for seal in body.seals]
    return {"held": await run_in_threadpool(s.sealer.hold, other_side(s), seals, key)}


@peer_router.get("/peer/audit-seals", summary="The other system's seals of a day as held "
                 "here (its audit checks them against its chains)",
                 responses=error_responses(*PEER, INVALID, FAULT))
def held_seals(s: Side, day: Annotated[str, Query(pattern=r"^[0-9]{8}$")]) -> list[dict]:
    return s.sealer.held(other_side(s), day)


def other_side(s: Any) -> str:
    return "essc" if s.sealer.system == "ehc" else "ehc"


admin_router = APIRouter(tags=["admin"], dependencies=[Admin])


@admin_router.post("/admin/faults", summary="Outage drills: make this system slow or "
                   "unavailable (the EHC side: code fetches and verifications; the e-SSC "
                   "side: its peer routes)", responses=error_responses(*ADMIN, INVALID))
def faults(s: Side, body: FaultSettings) -> dict:
    return s.faults.set(body)


@admin_router.get("/admin/audit", summary="Verify the day's keyed audit chains (usage "
                  "records; on the e-SSC side also the ledger postings) against their "
                  "seals: this system's file and the other system's copy",
                  responses=error_responses(*ADMIN, INVALID))
async def audit(s: Side, day: Annotated[str, Query(alias="date", pattern=DAY)]) -> dict:
    return await verify_sealed(s, parse_day(day).strftime("%Y%m%d"))


@admin_router.post("/admin/audit/seal", summary="Seal the day's chain heads now (signed, "
                   "exported to this system's file and to the other system; the servers "
                   "also do it every EHC_SYNC_INTERVAL_S)",
                   responses=error_responses(*ADMIN, INVALID))
async def seal(s: Side, day: Annotated[str, Query(alias="date", pattern=DAY)]) -> dict:
    return await seal_and_export(s.sealer, s.fusion.peer if s.fusion else None,
                                 parse_day(day).strftime("%Y%m%d"))


@admin_router.post("/admin/fusion/pull-usage", summary="Pull the peer's new usage records "
                   "of bound cards now",
                   responses=error_responses(*ADMIN, UNCONFIGURED, *PEER_DOWN))
async def pull_usage(s: Side) -> dict:
    return {"received": await fusion_of(s).pull_usage()}


@admin_router.post("/admin/civil-affairs/deaths:pull", summary="Cancel the cards of the "
                   "deaths civil affairs registered since the last pull (the servers also "
                   "do it every EHC_SYNC_INTERVAL_S)",
                   responses=error_responses(*ADMIN, (503, "REGISTRY_UNAVAILABLE",
                                                      "the registry did not answer"),
                                             (503, "REGISTRY_NOT_CONFIGURED",
                                              "no registry configured (e-SSC side)")))
async def pull_deaths(s: Side) -> dict:
    return {"cancelled": await s.pull_deaths()}


channel_router = APIRouter(tags=["channel"])


@channel_router.get("/cards/{card}/usage-history",
                    summary="This card's usage records from both card systems, newest first",
                    responses=error_responses(*APP_AUTH, INVALID,
                                              (404, "CARD_NOT_FOUND", "no such EHC here"),
                                              (404, "SSC_CARD_NOT_FOUND", "no such e-SSC here")))
def usage_history(s: Side, card: str, app: SignedApp,
                  limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[dict]:
    s.consent.refuse_unheld(card, app.app_key, manage=False)
    return s.usage.card_records(s.engine, card, limit)


data_router = APIRouter(tags=["data"], dependencies=[DataReader])


class ExportPage(BaseModel):
    """A page of a source for the data resources layer."""

    rows: list[dict[str, Any]] = Field(description="in key order; times in ISO 8601 (UTC)")
    cursor: str | None = Field(description="the last row's keys: pass it as `after`")
    more: bool = Field(description="a full page: ask again after `cursor`")
    keys: list[str]
    dated_by: str = Field(description="the field that dates a row (the store's partition)")


DATA_AUTH = [(401, "UNAUTHENTICATED", "no bearer token"),
             (403, "FORBIDDEN", "not the data token nor an operator's"),
             (404, "EXPORT_SOURCE_UNKNOWN", "no such source"),
             (400, "CURSOR_INVALID", "not a cursor of this source")]


@data_router.get("/export/{source}", response_model=ExportPage,
                 summary="A page of one source's rows for the data resources layer, in key "
                 "order after a cursor (pseudonyms only: EMPI and card IDs, never names or "
                 "ID numbers)",
                 responses=error_responses(*DATA_AUTH))
async def export(side: Side, source: str,
                 after: Annotated[str | None, Query(max_length=200)] = None,
                 limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> dict:
    return await run_in_threadpool(export_page, side.exports, side.engine, source, after,
                                   limit)
