"""Composition of the stack: each system's router over its own store, mounted in one ASGI
app (the default one-process mode) or one system per process (``systems=``)."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from .common.auth import Admin, Peer
from .common.cards import consent_routes, side_routes
from .common.cards import routes as caller_routes
from .common.cards.consent_routes import ConsentOf
from .common.cards.feeds import CivilAffairs
from .common.cards.routes import CallersOf
from .common.cards.seals import seal_and_export
from .common.cards.side_routes import SideOf
from .common.cst import CST
from .common.db import cannot_open, make_engine, redacted
from .common.errors import Unavailable, error_responses, install_error_handlers, store_fault
from .common.fastpath import FastPath, HeadAsGet, HotRoute
from .common.logs import RequestIdMiddleware, configure_logging, server_stats
from .common.pii import field_cipher
from .common.secrets_store import deployment_secret, master_key
from .common.settings import Settings, SettingsInvalid, get_settings
from .common.shared_store import RedisStore, SharedStore

ALL_SYSTEMS = ("registry", "healthcard", "socialcard", "payment", "sms", "channel",
               "hospital")
INPROC_URL = "http://inproc"

DESCRIPTION = """
The card-service stack of ehc-twin: the population registry (real-name source), the
electronic health card (EHC) management system, the e-SSC / medical-insurance card system
(with the two-card binding both sides hold) and the unified channel entry (浙里办-like).

**Authentication.** Channel apps and terminals sign every request (HMAC-SM3 with their
secret, or SM2 with their registered key): headers `X-EHC-Key`, `X-EHC-Timestamp`,
`X-EHC-Nonce`, `X-EHC-Sign-Method`, `X-EHC-Signature` over
`METHOD\\nPATH\\nSORTED_QUERY\\nTIMESTAMP\\nNONCE\\nSM3(body)`. Operators and peer systems
use bearer tokens. `services.sdk` signs for you.

**Errors** always answer `{"code", "message", "request_id"}`; each route lists its codes.
"""


# ---------------------------------------------------------------- operations
operations_router = APIRouter()


@operations_router.get("/ehc/v1/admin/server-stats", tags=["admin"], dependencies=[Admin],
                       summary="This worker's request counts and latency histogram",
                       responses=error_responses((401, "UNAUTHENTICATED", "no bearer token"),
                                                 (403, "FORBIDDEN", "not admin")))
def stats() -> dict:
    return server_stats.snapshot()


@operations_router.get("/ping", tags=["public"], summary="Liveness through the framework (the "
                       "benchmark's trivial route)")
async def ping() -> Response:
    return Response(await _ping({}, b""), media_type="application/json")


@operations_router.get("/healthz", tags=["public"], summary="Liveness for load balancers, "
                       "served by the fast path below the framework (like the verify route)")
async def healthz() -> Response:  # documents the fast-path route
    return Response(await _ping({}, b""), media_type="application/json")


@operations_router.get("/readyz", tags=["public"], summary="Readiness: every store (and Redis) of "
                       "this process answers within EHC_STORE_TIMEOUT_S (liveness is "
                       "/healthz)", responses=error_responses(
                           (503, "STORE_UNAVAILABLE", "a store is locked or unreachable")))
async def readyz(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    engines = {name: system.engine for name, system in request.app.state.systems.items()
               if hasattr(system, "engine")}
    states = await asyncio.gather(*(_store_state(engine, settings.store_timeout_s)
                                    for engine in engines.values()))
    stores = dict(zip(engines, states, strict=True))
    shared = next((system.callers.store for system in request.app.state.systems.values()
                   if isinstance(getattr(getattr(system, "callers", None), "store", None),
                                 RedisStore)), None)
    if shared is not None:  # every signed request's nonce goes there
        stores["redis"] = await _answer_state(shared.ping_async(), settings.store_timeout_s)
    if all(v == "ok" for v in stores.values()):
        return Response(orjson.dumps({"ready": True, "stores": stores}),
                        media_type="application/json")
    down = ", ".join(f"{n}: {v}" for n, v in stores.items() if v != "ok")
    raise Unavailable("STORE_UNAVAILABLE", f"stores not ready ({down})", {"Retry-After": "1"})


async def _store_state(engine, timeout_s: float) -> str:
    """'ok', or why a trivial query of the store did not answer in time."""
    def probe() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            if engine.dialect.name == "sqlite":  # a writer's lock shows only on writing
                conn.execute(text("BEGIN IMMEDIATE"))
                conn.execute(text("ROLLBACK"))

    return await _answer_state(asyncio.to_thread(probe), timeout_s, lock_shows=True)


async def _answer_state(probe: Awaitable[None], timeout_s: float,
                        lock_shows: bool = False) -> str:
    """'ok', or why ``probe`` did not answer in time: "timeout", "locked" (a store whose
    lock shows in its error), or the error's kind."""
    try:
        await asyncio.wait_for(probe, timeout_s + 1)
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        return "locked" if lock_shows and "locked" in str(exc) else type(exc).__name__
    return "ok"


def close_app(app: FastAPI) -> None:
    """Give back what the app holds: the hot path's writer thread and its connection, and
    every store's pooled connections (an in-process stack stopped in a long-lived
    process, a test run, must not keep its PostgreSQL connections)."""
    for system in app.state.systems.values():
        for hot_path in ("verifier", "cards"):  # those that hold their own connections
            close = getattr(getattr(system, hot_path, None), "close", None)
            if close is not None:
                close()
        engine = getattr(system, "engine", None)
        if engine is not None:
            engine.dispose()


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ehc-twin")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0.2.0"


# FastAPI's own OpenTelemetry hooks (in its newer releases) look for a provider on every
# request; nothing here configures one
NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters else {})


class SystemsInvalid(ValueError):
    """The systems asked of one process cannot run together as configured (unknown names,
    none, or a system whose peers are neither mounted here nor at an ``EHC_*_URL``)."""


def build_app(settings: Settings | None = None,
              systems: Sequence[str] = ALL_SYSTEMS) -> FastAPI:
    settings = settings or get_settings()
    unknown = set(systems) - set(ALL_SYSTEMS)
    if unknown:
        raise SystemsInvalid(f"unknown systems: {', '.join(sorted(unknown))} (known: "
                             f"{', '.join(ALL_SYSTEMS)})")
    if not systems:
        raise SystemsInvalid(f"no system to run (known: {', '.join(ALL_SYSTEMS)})")
    configure_logging(settings.log_level)
    master = master_key(settings)
    cipher = field_cipher(master)
    # Swagger UI and ReDoc from files shipped in the package: /docs works offline and on
    # a hospital intranet (FastAPI's own pages load them from a CDN)
    app = FastAPIOffline(title="ehc-twin card network", version=package_version(),
                         description=DESCRIPTION, lifespan=_lifespan, **NO_TELEMETRY)
    install_error_handlers(app)
    # what the routes' dependencies read (services.common.auth, each system's deps.py)
    app.state.admin_token = deployment_secret(settings, "admin_token")
    app.state.service_token = service_token = deployment_secret(settings, "service_token")
    app.state.data_token = deployment_secret(settings, "data_token")
    app.state.systems = {}
    app.state.settings = settings
    app.state.sync_interval_s = settings.sync_interval_s
    hot_routes = [HotRoute("GET", "/healthz", _ping)]

    def peer_url(system: str, configured: str | None) -> tuple[str | None, FastAPI | None]:
        """In-process when the peer is mounted here, else its configured URL (or None)."""
        return (INPROC_URL, app) if system in systems else (configured, None)

    if "registry" in systems:
        from .registry import api as registry_api
        from .registry.residents import RegistryService
        from .registry.tables import metadata as registry_metadata

        app.state.systems["registry"] = RegistryService(
            make_engine(settings, "registry", registry_metadata), cipher)
        app.include_router(registry_api.router)

    if "hospital" in systems:
        from .hospital import api as hospital_api
        from .hospital.system import build_hospital

        app.state.systems["hospital"] = build_hospital(settings)
        app.include_router(hospital_api.admin)
        app.include_router(hospital_api.router)
        app.include_router(hospital_api.data)

    if "healthcard" in systems:
        from .healthcard import api as healthcard_api
        from .healthcard import fusion_api as healthcard_fusion_api
        from .healthcard.peers import RegistryClient, SocialcardClient
        from .healthcard.system import build_healthcard

        url, inproc = peer_url("registry", settings.registry_url)
        if url is None:
            raise SystemsInvalid("EHC_REGISTRY_URL is needed when the registry runs elsewhere")
        client = RegistryClient(url, service_token, app=inproc)
        url, inproc = peer_url("socialcard", settings.socialcard_url)
        if inproc is not None:  # mounted here: the fused verification's hop is a call
            from .direct import DirectSocialcard

            social: SocialcardClient | None = DirectSocialcard(
                INPROC_URL, service_token, inproc, lambda: app.state.systems["socialcard"])
        else:
            social = None if url is None else SocialcardClient(url, service_token)
        app.state.systems["healthcard"] = build_healthcard(settings, master, client, cipher,
                                                           social)
        app.include_router(healthcard_api.router)
        app.include_router(caller_routes.router, prefix="/ehc/v1",
                           dependencies=[Depends(CallersOf("healthcard"))])
        app.include_router(consent_routes.router, prefix="/ehc/v1",
                           dependencies=[Depends(ConsentOf("healthcard"))])
        app.include_router(healthcard_fusion_api.router)
        side = [Depends(SideOf("healthcard"))]
        app.include_router(side_routes.peer_router, prefix="/ehc/v1", dependencies=side)
        app.include_router(side_routes.admin_router, prefix="/ehc/v1", dependencies=side)
        app.include_router(side_routes.channel_router, prefix="/ehc/v1", dependencies=side)
        app.include_router(side_routes.data_router, prefix="/ehc/v1", dependencies=side)
        hot_routes += [healthcard_api.VERIFY_ROUTE, healthcard_api.QRCODE_ROUTE]

    if "socialcard" in systems:
        from .socialcard import api as socialcard_api
        from .socialcard import deps as socialcard_deps
        from .socialcard import settlement_api
        from .socialcard.peers import HealthcardClient, PaymentClient
        from .socialcard.system import build_socialcard

        url, inproc = peer_url("healthcard", settings.healthcard_url)
        if url is None:
            raise SystemsInvalid("EHC_HEALTHCARD_URL is needed when the EHC system runs elsewhere")
        pay_url, pay_app = peer_url("payment", settings.payment_url)
        reg_url, reg_app = peer_url("registry", settings.registry_url)
        app.state.systems["socialcard"] = build_socialcard(
            settings, master, cipher, HealthcardClient(url, service_token, app=inproc),
            None if pay_url is None else PaymentClient(pay_url, service_token, app=pay_app),
            None if reg_url is None else CivilAffairs(reg_url, service_token, app=reg_app))
        # settlement's routes before the operators' fault drill (the fuzzing walks the
        # document in order: a drill it switches on must not hide the routes after it)
        app.include_router(settlement_api.router)
        app.include_router(socialcard_api.router)
        side = [Depends(SideOf("socialcard"))]  # its drill answers on its peer routes too
        app.include_router(side_routes.peer_router, prefix="/essc/v1",
                           dependencies=[*side, Peer, socialcard_deps.Faults])
        app.include_router(side_routes.admin_router, prefix="/essc/v1", dependencies=side)
        app.include_router(side_routes.channel_router, prefix="/essc/v1", dependencies=side)
        app.include_router(side_routes.data_router, prefix="/essc/v1", dependencies=side)
        app.include_router(caller_routes.router, prefix="/essc/v1",
                           dependencies=[Depends(CallersOf("socialcard"))])
        app.include_router(consent_routes.router, prefix="/essc/v1",
                           dependencies=[Depends(ConsentOf("socialcard"))])

    if "payment" in systems:
        from .payment import api as payment_api
        from .payment.peers import MerchantNotifier
        from .payment.system import build_payment

        url, inproc = peer_url("socialcard", settings.socialcard_url)
        app.state.systems["payment"] = build_payment(settings)
        app.state.notifier = None if url is None else MerchantNotifier(
            url, service_token, app=inproc)
        app.include_router(payment_api.router)

    if "sms" in systems:
        from .sms import api as sms_api
        from .sms.gateway import OutboxGateway
        from .sms.tables import metadata as sms_metadata

        app.state.systems["sms"] = OutboxGateway(make_engine(settings, "sms", sms_metadata),
                                                 cipher)
        app.include_router(sms_api.router)

    if "channel" in systems:
        from .channel import api as channel_api
        from .channel import kiosk_api
        from .channel.entry import build_channel

        urls = {name: peer_url(name, getattr(settings, f"{name}_url"))
                for name in ("registry", "healthcard", "socialcard", "sms")}
        if any(u is None for u, _ in urls.values()):
            raise SystemsInvalid("the channel needs the registry, EHC, e-SSC and SMS systems "
                             "(mounted here or EHC_REGISTRY_URL / EHC_HEALTHCARD_URL / "
                             "EHC_SOCIALCARD_URL / EHC_SMS_URL)")
        urls["hospital"] = peer_url("hospital", settings.hospital_url)
        app.state.systems["channel"] = build_channel(settings, cipher, urls, service_token,
                                                     app.state.admin_token)
        app.include_router(channel_api.router)
        app.include_router(kiosk_api.router)

    app.include_router(operations_router)

    # innermost first: the fast path sits inside the request-ID layer, so hot routes get
    # request IDs and access lines like every other route; HEAD is routed as GET
    app.add_middleware(FastPath, routes=hot_routes)
    app.add_middleware(HeadAsGet)
    app.add_middleware(RequestIdMiddleware)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    """While serving, every ``EHC_SYNC_INTERVAL_S``: each card system pulls its peer's usage
    records and the registry's deaths, and seals its audit heads; the e-SSC side asks the
    gateway about visits awaiting confirmation. On shutdown, a worker leaves its own
    request statistics in ``EHC_STATS_DIR`` (when set): with several uvicorn workers no
    single process sees them all."""
    interval, systems = app.state.sync_interval_s, app.state.systems
    sides = [name for name in ("healthcard", "socialcard") if name in systems]

    def once(side: str, what: str, job):  # a pull of shared state: one process a turn
        return once_per_interval(systems[side].callers.store, f"{side}:{what}", interval, job)

    jobs = [] if interval <= 0 else [
        *[("ehc.sync", "usage pull", once(name, "usage", systems[name].fusion.pull_usage))
          for name in sides if systems[name].fusion is not None],
        *[("ehc.audit", "sealing audit heads", partial(seal_recent, systems[name]))
          for name in sides],
        *[("ehc.civil", "deaths pull", once(name, "deaths", systems[name].pull_deaths))
          for name in sides if getattr(systems[name], "civil", True) is not None],
        *([("ehc.settlement", "confirming open settlements", once(
            "socialcard", "confirm", partial(systems["socialcard"].settlements.confirm_open,
                                             2 * interval)))]
          if "socialcard" in systems else []),
    ]
    tasks = [asyncio.create_task(every(interval, *job)) for job in jobs]
    if "payment" in systems:
        from .payment.peers import notify_forever

        tasks.append(asyncio.create_task(notify_forever(systems["payment"],
                                                        app.state.notifier)))
    yield
    for task in tasks:
        task.cancel()
    stats_dir = os.environ.get("EHC_STATS_DIR")
    if stats_dir:
        path = Path(stats_dir) / f"server-stats-{os.getpid()}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(server_stats.snapshot()))


def once_per_interval(store: SharedStore, name: str, interval_s: float,
                      job: Callable[[], Awaitable[Any]]
                      ) -> Callable[[], Coroutine[Any, Any, None]]:
    """``job``, made by one process of the deployment per interval: the first to claim the
    interval's token in the shared store (every worker and server runs the same timers;
    the others would fetch the same pages only to find the cursor moved). A process alone
    claims every interval; a claimer that fails or dies leaves the next interval free."""
    async def run() -> None:
        token = f"job:{name}:{int(time.time() // interval_s)}"
        if await asyncio.to_thread(store.claim, token, 2 * interval_s):
            await job()
    return run


async def every(interval_s: float, log: str, what: str, job) -> None:
    """Run ``job`` every ``interval_s``; a failure (a peer down) is logged and retried next
    time (the cursors make every catch-up exact)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except Exception as exc:
            logging.getLogger(log).warning("%s failed: %s", what, type(exc).__name__)


async def seal_recent(side) -> None:
    """Seal the audit heads of today (and of yesterday, whose last rows may have come
    after its last seal) and export them; a peer that is down gets them next time."""
    peer = side.fusion.peer if side.fusion is not None else None
    today = datetime.now(CST)
    failed = None
    for day in (today - timedelta(days=1), today):
        try:
            await seal_and_export(side.sealer, peer, day.strftime("%Y%m%d"))
        except Exception as exc:  # the other day is still sealed
            failed = exc
    if failed is not None:
        raise failed


async def _ping(scope: dict, body: bytes) -> bytes:
    return orjson.dumps({"ok": True})


def create_app() -> FastAPI:
    """Factory for ``uvicorn --factory services.app:create_app``: settings from EHC_*."""
    systems = os.environ.get("EHC_SYSTEMS", ",".join(ALL_SYSTEMS)).split(",")
    return open_or_exit(None, [s.strip() for s in systems if s.strip()])


class StoreNotOpened(RuntimeError):
    """The stores could not be opened (a wrong EHC_DATABASE_URL, a server down): which
    store and why, in one line, never a password."""


def opened_app(settings: Settings, systems: Sequence[str] = ALL_SYSTEMS) -> FastAPI:
    """``build_app``, or ``StoreNotOpened`` when its stores cannot be opened."""
    try:
        return build_app(settings, systems)
    except Exception as exc:
        if not (store_fault(exc) or isinstance(exc, SQLAlchemyError | ImportError)):
            raise
        where = redacted(settings.database_url) if settings.database_url \
            else str(settings.var_dir)
        raise StoreNotOpened(cannot_open(where, exc)) from None


def open_or_exit(settings: Settings | None, systems: Sequence[str]) -> FastAPI:
    """The app (``settings`` None: from ``EHC_*``); or, when its settings, its systems or
    its stores are refused, why on stderr in one line and exit status 2, not a traceback."""
    try:
        return opened_app(settings or get_settings(), systems)
    except (StoreNotOpened, SystemsInvalid) as exc:
        sys.stderr.write(f"error: {exc}\n")
    except SettingsInvalid as exc:  # one line a variable, not a traceback in each worker
        sys.stderr.write(f"error: settings: {exc}\n")
    raise SystemExit(2)
