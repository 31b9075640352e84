"""What every card system offers around its callers: the admin routes that register
institutions, terminals and channel apps, and the dependencies that authenticate them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from ..auth import Admin
from ..errors import error_responses
from .callers import Callers, ChannelApp, Terminal

SIGNED = [
    (401, "SIGNATURE_MISSING", "request not signed"),
    (401, "SIGNATURE_STALE", "timestamp too old or ahead"),
    (401, "SIGNATURE_REPLAYED", "nonce reused"),
    (401, "SIGNATURE_INVALID", "signature does not match"),
    (429, "RATE_LIMITED", "the caller's request rate is over its limit (Retry-After)"),
]
APP_AUTH = [*SIGNED, (401, "UNKNOWN_APP", "app not registered")]
TERM_AUTH = [*SIGNED, (401, "UNKNOWN_TERMINAL", "terminal not registered or disabled")]
ADMIN = [(401, "UNAUTHENTICATED", "no bearer token"), (403, "FORBIDDEN", "not admin")]
PEER = [(401, "UNAUTHENTICATED", "no bearer token"),
        (403, "FORBIDDEN", "not a peer system's token")]
INVALID = (422, "INVALID_REQUEST", "body or parameters do not match the schema")
CONSENT = (403, "CONSENT_REQUIRED", "the card is held through another app: the resident "
           "grants access at the unified entry")
SCOPE = (403, "SCOPE_INSUFFICIENT", "the resident granted this app the 'codes' scope only")
SM2_PUBLIC = r"^04[0-9a-fA-F]{128}$"
SECRET = r"^[A-Za-z0-9_\-]{32,64}$"


class Strict(BaseModel):
    """A request body: no unknown fields, no coercion, and no text a store cannot hold
    (PostgreSQL refuses NUL characters)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


class InstitutionRequest(Strict):
    code: str = Field(pattern=r"^[0-9A-Z]{12}$", examples=["330100000001"])
    name: str = Field(min_length=1, max_length=128)
    city_code: str = Field(pattern=r"^[0-9]{6}$", examples=["330100"])
    sm2_public_key: str | None = Field(None, pattern=SM2_PUBLIC)
    level: int = Field(3, ge=0, le=3, description="0 a designated retail pharmacy; a "
                       "hospital's level: 1 primary, 2 secondary, 3 tertiary (it sets the "
                       "insurance ratio)")


class TerminalRequest(Strict):
    institution_code: str = Field(pattern=r"^[0-9A-Z]{12}$")
    dept_code: str = Field(pattern=r"^[0-9]{4}$", examples=["0101"])
    terminal_type: Literal[1, 2, 99] = 1
    reads_physical_cards: bool = Field(False, description=(
        "a reader of physical cards: may present static codes (<card ID>:1), which "
        "hardened mode refuses from any other terminal"))
    secret: str | None = Field(None, pattern=SECRET, description=(
        "provision the secret this terminal already holds with the other card system; "
        "omitted = a new one"))


class TerminalCredentials(BaseModel):
    terminal_id: str
    secret: str = Field(description="shown once; HMAC-SM3 signing secret")


class AppRequest(Strict):
    name: str = Field(min_length=1, max_length=128)
    sm2_public_key: str | None = Field(None, pattern=SM2_PUBLIC)
    app_key: str | None = Field(None, pattern=r"^app_[0-9a-f]{16}$", description=(
        "provision the key this app already holds with the other card system"))
    app_secret: str | None = Field(None, pattern=SECRET)
    strong_realname: bool = Field(False, description=(
        "the app logs residents in strongly (SMS code to the registry's phone), like the "
        "unified entry: it may claim a resident's existing cards; other apps reach them "
        "only through the resident's grant"))


class AppCredentials(BaseModel):
    app_key: str
    app_secret: str = Field(description="shown once")


class SystemDependency:
    """A dependency about one card system of the app (``app.state.systems[system]``):
    both card systems declare theirs with their own name, e.g. ``SignedApp("healthcard")``."""

    def __init__(self, system: str) -> None:
        self.system = system

    def of(self, request: Request) -> Any:
        return request.app.state.systems[self.system]


async def signed_by(request: Request, authenticate: Any) -> Any:
    """The caller ``authenticate`` finds in a signed request; the body is read here, the
    check (which writes the nonce to the store) runs off the event loop."""
    body = await request.body()
    return await run_in_threadpool(authenticate, request.headers, request.method,
                                   request.url.path, request.url.query, body)


class SignedApp(SystemDependency):
    """The signed channel app of a request (its body is part of the signature)."""

    async def __call__(self, request: Request) -> ChannelApp:
        return await signed_by(request, self.of(request).callers.authenticate_app)


class SignedTerminal(SystemDependency):
    """The signed terminal of a request."""

    async def __call__(self, request: Request) -> Terminal:
        return await signed_by(request, self.of(request).callers.authenticate_terminal)


class FaultDrill(SystemDependency):
    """The system's outage drill (``/admin/faults``): slow or unavailable on purpose."""

    async def __call__(self, request: Request) -> None:
        await self.of(request).faults.apply()


class CallersOf(SystemDependency):
    """Names the system whose callers :data:`router`'s routes act on (given when the
    router is included)."""

    def __call__(self, request: Request) -> None:
        request.state.callers = self.of(request).callers


# ---------------------------------------------------------------- the admin routes
# Both card systems register their own callers through the same three routes: each
# includes this router under its prefix with ``Depends(CallersOf(system))``, which tells
# the routes whose registry they act on.
router = APIRouter(tags=["admin"], dependencies=[Admin])


def system_callers(request: Request) -> Callers:
    return request.state.callers


SystemCallers = Annotated[Callers, Depends(system_callers)]


@router.post("/admin/institutions", status_code=201,
             responses=error_responses(*ADMIN, INVALID,
                                       (409, "INSTITUTION_EXISTS", "already registered")))
def add_institution(body: InstitutionRequest, callers: SystemCallers) -> dict:
    callers.add_institution(body.code, body.name, body.city_code, body.sm2_public_key,
                            body.level)
    return {"code": body.code}


@router.post("/admin/terminals", status_code=201, response_model=TerminalCredentials,
             responses=error_responses(*ADMIN, INVALID,
                                       (404, "INSTITUTION_NOT_FOUND", "unknown"),
                                       (409, "TERMINAL_EXISTS", "already registered")))
def add_terminal(body: TerminalRequest, callers: SystemCallers) -> dict:
    tid, secret = callers.add_terminal(body.institution_code, body.dept_code,
                                       body.terminal_type, body.secret,
                                       body.reads_physical_cards)
    return {"terminal_id": tid, "secret": secret}


@router.post("/admin/channel-apps", status_code=201, response_model=AppCredentials,
             responses=error_responses(*ADMIN, INVALID,
                                       (409, "APP_EXISTS", "app key already registered")))
def add_app(body: AppRequest, callers: SystemCallers) -> dict:
    key, secret = callers.add_app(body.name, body.sm2_public_key, body.app_key,
                                  body.app_secret, body.strong_realname)
    return {"app_key": key, "app_secret": secret}


# ---------------------------------------------------------------- managing credentials
class RotateRequest(Strict):
    secret: str | None = Field(None, pattern=SECRET, description=(
        "provision the secret the other card system already rotated to; omitted = new"))


class CallerState(BaseModel):
    active: bool


KINDS = {"terminals": ("terminal", "TERMINAL_NOT_FOUND"),
         "channel-apps": ("channel_app", "APP_NOT_FOUND")}


def _manage_routes(path: str, kind: str, missing: str) -> None:
    gone = (404, missing, f"no such {kind.replace('_', ' ')}")

    def listing(callers: SystemCallers) -> list[dict]:
        return callers.listing(kind)

    def disable(key: str, callers: SystemCallers) -> dict:
        callers.set_active(kind, key, False)
        return {"active": False}

    def enable(key: str, callers: SystemCallers) -> dict:
        callers.set_active(kind, key, True)
        return {"active": True}

    def rotate(key: str, callers: SystemCallers, body: RotateRequest | None = None) -> dict:
        return {"secret": callers.rotate(kind, key, body.secret if body else None)}

    router.add_api_route(f"/admin/{path}", listing, methods=["GET"], name=f"list_{kind}s",
                         summary=f"Every {kind.replace('_', ' ')} and its state (no secrets)",
                         responses=error_responses(*ADMIN))
    for verb, fn, doc in (("disable", disable, "refused on every worker within a second"),
                          ("enable", enable, "accepted again")):
        router.add_api_route(f"/admin/{path}/{{key}}/{verb}", fn, methods=["POST"],
                             response_model=CallerState, name=f"{verb}_{kind}",
                             summary=f"{verb.capitalize()} a {kind.replace('_', ' ')}: {doc}",
                             responses=error_responses(*ADMIN, gone))
    router.add_api_route(f"/admin/{path}/{{key}}/rotate", rotate, methods=["POST"],
                         name=f"rotate_{kind}",
                         summary=f"A new secret for a {kind.replace('_', ' ')} (shown once); "
                         "the old one stops working within a second",
                         responses=error_responses(*ADMIN, INVALID, gone))


for _path, (_kind, _missing) in KINDS.items():
    _manage_routes(_path, _kind, _missing)
