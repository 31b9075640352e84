"""The one error shape of every system: ``{"code", "message", "request_id"}``."""

from __future__ import annotations

import functools
import logging
import re
import sqlite3
from datetime import date

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

log = logging.getLogger("ehc.errors")


class ErrorBody(BaseModel):
    """What every refusal answers."""

    code: str
    message: str
    request_id: str


class ServiceError(Exception):
    """Base of every expected refusal: a stable machine-readable ``code`` and a human
    ``message``. Domain modules raise the kinds below and never name an HTTP status;
    the edge maps a kind to its status through :data:`HTTP_STATUS` (one table, here).

    ServiceError
    ├── BadRequest        400  the request cannot be taken as sent (clock skew, a client gone)
    ├── Unauthenticated   401  no valid credentials (signature, token)
    ├── Forbidden         403  authenticated, but not allowed (a card lost, another's card)
    ├── NotFound          404  no such thing for this caller
    ├── Conflict          409  not in this state (a replayed code, a busy account)
    ├── Gone              410  expired (a code, a voucher)
    ├── TooLarge          413  a body over its limit
    ├── Invalid           422  well-formed but wrong (schema, check digits, real-name)
    ├── RateLimited       429  over the caller's rate (Retry-After)
    ├── PeerFailed        502  a peer system answered with a fault
    ├── Unavailable       503  a dependency is down or not configured
    └── ApiError          any  a refusal with its status stated (route modules, relayed
                               answers of peers and stored idempotent replays)
    """

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers

    @property
    def status(self) -> int:
        """The HTTP status of this kind of refusal (for the edge)."""
        return next(HTTP_STATUS[k] for k in type(self).__mro__ if k in HTTP_STATUS)


class BadRequest(ServiceError):
    pass


class Unauthenticated(ServiceError):
    pass


class Forbidden(ServiceError):
    pass


class NotFound(ServiceError):
    pass


class Conflict(ServiceError):
    pass


class Gone(ServiceError):
    pass


class TooLarge(ServiceError):
    pass


class Invalid(ServiceError):
    pass


class RateLimited(ServiceError):
    pass


class PeerFailed(ServiceError):
    pass


class Unavailable(ServiceError):
    pass


# the DB-API's and SQLAlchemy's names for "the store did not answer" (locked past its
# timeout, unreachable, its connection pool exhausted); matched by name so that every
# driver (sqlite3, psycopg) and both layers (raw hot-path connections, Core) map alike
_STORE_FAULTS = {"OperationalError", "InterfaceError", "TimeoutError"}
# and the shared store's: Redis unreachable or not answering within its socket timeout
_REDIS_FAULTS = {"ConnectionError", "TimeoutError"}
_STORE_PACKAGES = ("sqlalchemy", "sqlite3", "psycopg", "psycopg2", "asyncpg")


def store_fault(exc: BaseException) -> Unavailable | None:
    """The 503 a store fault answers (no SQL, no values), or None for anything else."""
    for kind in type(exc).__mro__:
        package = kind.__module__.split(".")[0]
        if (kind.__name__ in _STORE_FAULTS and package in _STORE_PACKAGES) or (
                kind.__name__ in _REDIS_FAULTS and package == "redis"):
            return store_unavailable()
    return None


def store_refusal(exc: BaseException, request_id: str = "") -> Invalid | None:
    """The 422 for a value the store cannot hold (the DB-API's ``DataError``: a NUL
    character in a query parameter, which PostgreSQL refuses and SQLite keeps, a number
    out of its column's range): the request's fault, not the server's; else None."""
    for kind in type(exc).__mro__:
        if kind.__name__ == "DataError" and kind.__module__.split(".")[0] in _STORE_PACKAGES:
            log.warning("store refused a value: %s", type(exc).__name__,  # no values
                        extra={"request_id": request_id})
            return Invalid("INVALID_REQUEST", "a value the store cannot hold (a NUL "
                           "character, a number out of range)")
    return None


def log_store_unavailable(exc: BaseException, request_id: str = "") -> None:
    """Why a request answered 503 STORE_UNAVAILABLE: the fault's kind and PostgreSQL's
    SQLSTATE, never its text (a driver's message may quote a row's values)."""
    state = getattr(getattr(exc, "orig", None) or exc, "sqlstate", None)
    log.warning("store unavailable: %s (SQLSTATE %s)", type(exc).__name__, state or "none",
                extra={"request_id": request_id})


def store_unavailable() -> Unavailable:
    return Unavailable("STORE_UNAVAILABLE", "the store did not answer in time; retry",
                       {"Retry-After": "1"})


HTTP_STATUS: dict[type[ServiceError], int] = {
    BadRequest: 400, Unauthenticated: 401, Forbidden: 403, NotFound: 404, Conflict: 409,
    Gone: 410, TooLarge: 413, Invalid: 422, RateLimited: 429, PeerFailed: 502,
    Unavailable: 503,
}
KIND_OF_STATUS = {status: kind for kind, status in HTTP_STATUS.items()}


class ApiError(ServiceError):
    """A refusal with its HTTP status stated: for route modules (the edge), for a peer's
    answer relayed as it came, and for a stored answer replayed."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code, message, headers)
        self._status = status

    @property
    def status(self) -> int:
        return self._status


def error_body(code: str, message: str, request_id: str) -> bytes:
    return orjson.dumps({"code": code, "message": message, "request_id": request_id})


def request_id_of(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "") or ""


def _response(request: Request, status: int, code: str, message: str,
              headers: dict[str, str] | None = None) -> Response:
    return Response(
        error_body(code, message, request_id_of(request)),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


async def _store_error(request: Request, exc: Exception) -> Response:
    refused = store_refusal(exc, request_id_of(request))
    if refused is not None:
        return _response(request, 422, refused.code, refused.message)
    fault = store_fault(exc)
    if fault is None:
        log.error("store error: %s", type(exc).__name__,  # its text may hold values
                  extra={"request_id": request_id_of(request)})
        return _response(request, 500, "INTERNAL_ERROR", "internal error")
    log_store_unavailable(exc, request_id_of(request))
    return _response(request, fault.status, fault.code, fault.message, fault.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        return _response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # the caller hung up while its body was read (a load generator stopping): nobody
        # reads this answer, and it is no server fault to log
        return _response(request, 400, "CLIENT_DISCONNECTED", "client went away")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors()[:5]:
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc}: {err.get('msg')}")
        return _response(request, 422, "INVALID_REQUEST", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # the framework could not parse the body
            return _response(request, 422, "INVALID_REQUEST", "malformed request body")
        code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:  # RFC 9110: list every method the path allows
            headers["Allow"] = ", ".join(allowed_methods(request))
        return _response(request, exc.status_code, code, str(exc.detail), headers)

    # the store's errors get their own handlers: the catch-all below runs in Starlette's
    # outermost middleware, which re-raises (and so logs a traceback) after answering
    from redis.exceptions import ConnectionError as RedisDown
    from redis.exceptions import TimeoutError as RedisSilent

    for kind in (SQLAlchemyError, sqlite3.Error, RedisDown, RedisSilent):
        app.add_exception_handler(kind, _store_error)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": request_id_of(request)})
        return _response(request, 500, "INTERNAL_ERROR", "internal error")


HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """The methods of the resource at this path, and HEAD wherever GET is (``HeadAsGet``):
    those the API documents for the most literal path template that matches (a literal
    segment before a parameter: ``/cards/lookup`` takes POST, though its path would also
    fit ``/cards/{card_id}``'s GET); for a path no template documents (``/docs``), those
    the router takes there, asked as it routes."""
    path = request.scope.get("path", "")
    paths = request.app.openapi().get("paths", {})  # FastAPI builds it once, then keeps it
    fits = [t for t in paths if _template(t).fullmatch(path)]
    if fits:
        literal = min(t.count("{") for t in fits)
        allowed = {m.upper() for t in fits if t.count("{") == literal for m in paths[t]}
    else:
        from starlette.routing import Match

        allowed = {m for m in HTTP_METHODS
                   if any(r.matches({**request.scope, "method": m})[0] == Match.FULL
                          for r in request.app.router.routes)}
    ordered = [m for m in HTTP_METHODS if m in allowed]
    return [*ordered[:1], "HEAD", *ordered[1:]] if "GET" in allowed else ordered


@functools.lru_cache(maxsize=512)
def _template(path_template: str) -> re.Pattern[str]:
    """An OpenAPI path template (``/cards/{card_id}/qrcode``) as a pattern over paths."""
    return re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path_template)))


def error_responses(*codes: tuple[int, str, str]) -> dict:
    """OpenAPI ``responses`` documenting a route's refusals: (status, code, meaning)."""
    by_status: dict[int, list[tuple[str, str]]] = {}
    for status, code, meaning in codes:
        by_status.setdefault(status, []).append((code, meaning))
    out: dict = {}
    for status, items in by_status.items():
        out[status] = {
            "description": "; ".join(f"`{c}`: {m}" for c, m in items),
            "model": ErrorBody,
            "content": {
                "application/json": {
                    "example": {"code": items[0][0], "message": items[0][1], "request_id": "…"},
                }
            },
        }
    return out


MAX_JSON_BODY = 4 * 1024 * 1024


async def json_body(request: Request) -> object:
    """A request's JSON body parsed by orjson (for routes whose bodies are large lists a
    pydantic model would walk item by item); 413 / 422 when it is too big or not JSON."""
    body = await request.body()
    if len(body) > MAX_JSON_BODY:
        raise TooLarge("PAYLOAD_TOO_LARGE", "body is limited to 4 MiB")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid("INVALID_REQUEST", "body is not JSON") from exc


DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def parse_day(text: str) -> date:
    """A ``YYYY-MM-DD`` query value; 422 INVALID_REQUEST when it is not a real day (or
    the last day a calendar holds, which has no day after it to end a range)."""
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise Invalid("INVALID_REQUEST", "date: YYYY-MM-DD") from exc
    if day >= date.max:
        raise Invalid("INVALID_REQUEST", "date: before 9999-12-31")
    return day
