"""Hot routes served below the framework: a pure ASGI layer that answers a few exact
(method, path) pairs itself and hands everything else to the FastAPI app.

The routes stay declared in FastAPI too (they share the handler code through
``HotRoute``), so OpenAPI documents them; the framework's routing, dependency solving
and exception layers are what this skips per request.

Group commit (``WriteFunnel``): writes that arrive in the same turn of the event loop
are handed to one function as a batch (one transaction, one commit), and each caller gets
its own result or error only after that commit. SQLite has one writer and a commit costs
about 100 us here; batching spreads it over every request in flight."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .errors import (
    BadRequest,
    ServiceError,
    TooLarge,
    error_body,
    log_store_unavailable,
    store_fault,
    store_refusal,
)

Handler = Callable[[dict, bytes], Awaitable[bytes]]
JSON = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class HotRoute:
    """An exact path, or (``pattern``) a regular expression over the path; ``claims``
    decides from the scope (its query) whether this request is the fast path's, else the
    framework serves it."""

    method: str
    path: str
    handler: Handler  # (scope, body) -> JSON bytes, raises ServiceError
    max_body: int = 4096
    pattern: str | None = None
    claims: Callable[[dict], bool] | None = None


class FastPath:
    def __init__(self, app, routes: list[HotRoute]) -> None:
        self.app = app
        self.routes = {(r.method, r.path): r for r in routes if r.pattern is None}
        self.patterns = [(r.method, re.compile(r.pattern), r) for r in routes if r.pattern]

    def _route(self, scope) -> HotRoute | None:
        method, path = scope.get("method"), scope.get("path", "")
        route = self.routes.get((method, path))
        if route is None:
            route = next((r for m, rx, r in self.patterns
                          if m == method and rx.fullmatch(path)), None)
        if route is not None and route.claims is not None and not route.claims(scope):
            return None
        return route

    async def __call__(self, scope, receive, send) -> None:
        route = self._route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id", "")
        scope["route_path"] = route.path  # what the access line writes: the template
        status, headers = 200, JSON
        try:
            try:
                body = await _read_body(receive, route.max_body)
                payload = await route.handler(scope, body)
            except Exception as exc:
                refused = store_refusal(exc, rid)
                if refused is not None:
                    raise refused from None
                fault = store_fault(exc)
                if fault is None:
                    raise
                log_store_unavailable(exc, rid)
                raise fault from None
        except ServiceError as exc:
            status, payload = exc.status, error_body(exc.code, exc.message, rid)
            if exc.headers:
                headers = JSON + [(k.lower().encode(), v.encode())
                                  for k, v in exc.headers.items()]
        # the answer's length, as the framework's responses carry it: the server writes
        # it as it is, not in chunked framing (and a client reads it to its end at once)
        headers = [*headers, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class HeadAsGet:
    """HEAD answered wherever GET is (RFC 9110: a general-purpose server supports both):
    FastAPI's routes take GET alone, so ``curl -I``, a monitor's or a balancer's HEAD
    check was refused with 405. A HEAD request is routed as the GET it stands for and
    answered with its status and headers (``Content-Length`` included), no body. The
    request-ID layer outside it still records HEAD; a signed route checks the signature
    over the method it routes, GET."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


async def _read_body(receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("CLIENT_DISCONNECTED", "client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge("PAYLOAD_TOO_LARGE", f"body is limited to {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class Headers:
    """Case-insensitive view of ASGI headers, decoded lazily (what signing reads)."""

    __slots__ = ("_by_name",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._by_name = dict(reversed(raw))  # a repeated name: its first value, as a scan

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self._by_name.get(name.lower().encode())
        return default if value is None else value.decode("latin-1")


class StoreBusy(Exception):
    """The store's write lock is held elsewhere: nothing was written (try the thread)."""


INLINE_RUN = 256  # inline writes in a row before one goes through a thread (checkpoints)
LATER = object()  # what ``InlineFirst.now`` gives when the call must go to the thread


class InlineFirst:
    """A store call made on the loop when the store's lock is free at once (``inline``
    raises ``StoreBusy`` otherwise, nothing written), else on a thread (``threaded``):
    for SQLite, whose few-statement transactions cost less than the two thread switches.
    Inline writes do not checkpoint the WAL: every ``INLINE_RUN`` calls one goes through
    the thread, whose commit does. Without ``inline`` (PostgreSQL), always the thread."""

    def __init__(self, inline: Callable[..., Any] | None, threaded: Callable[..., Any]
                 ) -> None:
        self.inline = inline
        self.threaded = threaded
        self.run = 0

    def now(self, *args: Any) -> Any:
        """The call made here, or ``LATER`` (no inline way, the run is over, the lock
        is busy: nothing written)."""
        if self.inline is None or self.run >= INLINE_RUN:
            return LATER
        try:
            result = self.inline(*args)
        except StoreBusy:
            return LATER
        self.run += 1
        return result

    async def __call__(self, *args: Any) -> Any:
        result = self.now(*args)
        if result is not LATER:
            return result
        self.run = 0
        return await asyncio.to_thread(self.threaded, *args)


class WriteFunnel:
    def __init__(self, process: Callable[[Sequence[Any]], Sequence[Any]]
                 | Callable[[Sequence[Any]], Awaitable[Sequence[Any]]],
                 max_batch: int = 256,
                 inline: Callable[[Sequence[Any]], Sequence[Any]] | None = None) -> None:
        """``process(items)`` returns one result per item; an item whose result is an
        exception gets that exception; if ``process`` raises, every caller gets it.
        A plain function runs on one thread of its own, never on the event loop: a store
        that is locked or slow holds the writes waiting for it, not every other request of
        the worker (and one writer thread keeps a single SQLite writer per process). A
        coroutine function (an async driver's) is awaited on the loop, one batch at a
        time, as the thread would run them.

        ``inline`` (SQLite): when nothing waits and nothing is being written, the item is
        written right here on the loop if the store's write lock is free at once (else
        ``StoreBusy``, nothing written, and the item goes to the thread): a lone request
        does not pay the two thread switches (about 90 us of CPU here, as much as its
        writes). It writes without checkpointing; every ``INLINE_RUN`` batches one goes
        through the thread, whose commit checkpoints the WAL when it has grown."""
        self.process = process
        self._async = inspect.iscoroutinefunction(process)
        self._now = InlineFirst(inline, process)
        self._in_flight = 0
        self.max_batch = max_batch
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="funnel")
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._writing: set[asyncio.Future] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serial = asyncio.Lock()
        self._scheduled = False
        self.batches = 0
        self.items = 0

    def close(self) -> None:
        """Stop the writer thread (the app is shutting down)."""
        self._writer.shutdown(wait=True)

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or the app now runs on another loop
            self._loop, self._pending, self._scheduled = loop, [], False
            self._serial = asyncio.Lock()
        done: Any
        if self._async and not self._pending and not self._in_flight:
            done = await self._alone(item)  # no task or future of its own
        else:
            done = LATER if self._pending or self._in_flight else self._now.now([item])
        if done is not LATER:
            self.batches += 1
            self.items += 1
            if isinstance(done[0], BaseException):
                raise done[0]
            return done[0]
        fut = loop.create_future()
        self._pending.append((item, fut))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    async def _alone(self, item: Any) -> Sequence[Any]:
        """A lone item on an async store, in the caller's own task; what arrives
        meanwhile queues behind it (``_in_flight``)."""
        self._in_flight += 1
        try:
            async with self._serial:
                return await self.process([item])  # type: ignore[misc]
        finally:
            self._done_one()

    def _done_one(self) -> None:
        """A write finished: on an async store, what queued behind it is now one batch."""
        self._in_flight -= 1
        if self._async and self._pending and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._async and self._in_flight:  # group commit: they wait for the one in
            return  # flight (``_done_one``), then go together
        batch, self._pending = self._pending, []
        if batch:
            self._in_flight += 1
            self._now.run = 0  # a batch through the thread: its commit checkpoints
            task = asyncio.ensure_future(self._write(batch))
            self._writing.add(task)  # held until done (the loop keeps only weak references)
            task.add_done_callback(self._writing.discard)

    async def _write(self, batch: list[tuple[Any, asyncio.Future]]) -> None:
        self.batches += 1
        self.items += len(batch)
        loop = asyncio.get_running_loop()
        try:
            items = [item for item, _ in batch]
            if self._async:  # one transaction at a time, as on the writer thread
                async with self._serial:
                    results = await self.process(items)  # type: ignore[misc]
            else:
                results = await loop.run_in_executor(self._writer, self.process, items)
        except BaseException as exc:  # the whole transaction failed: nobody succeeded
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            self._done_one()
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
