"""Structured JSON logs with a request ID. Only fields named here are written: personal
data never reaches a log line because no code path hands it to one."""

from __future__ import annotations

import logging
import os
import sys
import time

import orjson

_SAFE_EXTRA = ("request_id", "method", "path", "status", "ms", "caller", "event", "count")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _SAFE_EXTRA:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info:
            out["exc"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return orjson.dumps(out).decode()


def configure_logging(level: str = "INFO") -> None:
    # uvicorn's own access line (on when uvicorn is started by hand at --log-level info)
    # writes the raw path and query string: a card's ID, a birth certificate's number, a
    # phone number in ``?phone=``. The stack writes its own (``RequestIdMiddleware``).
    logging.getLogger("uvicorn.access").disabled = True
    root = logging.getLogger("ehc")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


access_log = logging.getLogger("ehc.access")

BUCKETS_MS = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, float("inf"))
TRACKED = {"/ehc/v1/qrcodes/verify": "verify", "/ping": "ping", "/healthz": "healthz"}


class ServerStats:
    """This process's own request counts and latency histogram, by route and status
    class: what a load test checks its client-side figures against."""

    def __init__(self) -> None:
        self.routes: dict[str, dict] = {}

    @staticmethod
    def route_key(method: str, path: str) -> str:
        if path in TRACKED:
            return TRACKED[path]
        if path.endswith("/qrcode") and method == "GET":
            return "qrcode"
        return "other"

    def record(self, key: str, status: int, ms: float) -> None:
        r = self.routes.get(key)
        if r is None:
            r = self.routes[key] = {"count": 0, "by_status": {},
                                    "histogram_ms": [0] * len(BUCKETS_MS), "sum_ms": 0.0}
        r["count"] += 1
        cls = f"{status // 100}xx"
        r["by_status"][cls] = r["by_status"].get(cls, 0) + 1
        r["sum_ms"] += ms
        for i, edge in enumerate(BUCKETS_MS):
            if ms <= edge:
                r["histogram_ms"][i] += 1
                break

    def snapshot(self) -> dict:
        return {"pid": os.getpid(), "buckets_ms": [str(b) for b in BUCKETS_MS],
                "routes": self.routes}


server_stats = ServerStats()


def logged_path(scope: dict) -> str:
    """The path as the access line writes it: the matched route's template, not its
    parameters' values (a card's ID, a birth certificate's number), so that no
    identifier reaches a log line. The fast path names its route (``route_path``), the
    framework leaves the route it matched in ``route`` (a plain route without parameters,
    such as the API's documents, is its path); a path no route matched is written up to
    its system and version (``/registry/v1/…``: a typo may hold anything)."""
    template = scope.get("route_path") or getattr(scope.get("route"), "path_format", None)
    if template:
        return template
    path = scope.get("path", "")
    if "path_params" in scope and not scope["path_params"]:  # a route without parameters
        return path
    return "/".join(path.split("/")[:3]) + ("/…" if path.count("/") > 2 else "")


class RequestIdMiddleware:
    """Pure ASGI: gives each request a random ID of its own (an incoming ``X-Request-ID``
    is not taken: a caller does not name the server's log lines), answers it in
    ``X-Request-ID`` and writes one access line (no bodies, no query strings, no path
    parameters' values: ``logged_path``)."""

    def __init__(self, app, max_body: int = 1 << 20) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = os.urandom(16).hex()  # a random request ID (uuid4 costs 5x more)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status_box = [0]

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            ms = (time.perf_counter() - started) * 1000
            server_stats.record(server_stats.route_key(scope.get("method", ""),
                                                       scope.get("path", "")),
                                status_box[0], ms)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "request_id": rid,
                        "method": scope.get("method"),
                        "path": logged_path(scope),
                        "status": status_box[0],
                        "ms": round(ms, 3),
                    },
                )
