"""Idempotency keys of state-changing calls (``Idempotency-Key`` header): the first call
with a key runs; a retry with the same key and the same request gets the first answer
(success or refusal) without running again; the same key with another request is
refused; a retry while the first is still running is told to wait. A call that failed
for a passing reason (5xx) frees its key for the retry."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..crypto import sm3
from ..cst import utc_now
from ..errors import ApiError, Conflict, Invalid, ServiceError

KEY_RE = re.compile(r"[A-Za-z0-9_\-]{8,64}")
STALE = timedelta(seconds=60)  # an in-progress key this old belongs to a dead process



def request_hash(method: str, path: str, body: bytes) -> str:
    return sm3(f"{method} {path}\n".encode() + body).hex()


class Idempotency:
    def __init__(self, engine: Engine, table: Table) -> None:
        self.engine = engine
        self.t = table

    async def run(self, owner: str, key: str | None, req_hash: str,
                  call: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        if key is None or not KEY_RE.fullmatch(key):
            raise Invalid("IDEMPOTENCY_KEY_REQUIRED", "header Idempotency-Key: 8 to 64 "
                           "of [A-Za-z0-9_-], one per intended change")
        try:
            self._claim(owner, key, req_hash)
        except Replay as replay:
            return replay.body
        try:
            body = await call()
        except ServiceError as exc:
            if exc.status >= 500:
                self._free(owner, key)
            else:
                self._store(owner, key, exc.status, {"code": exc.code, "message": exc.message})
            raise
        except BaseException:
            self._free(owner, key)
            raise
        self._store(owner, key, 200, body)
        return body

    def _claim(self, owner: str, key: str, req_hash: str) -> None:
        t = self.t
        now = utc_now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(t).values(institution_code=owner, key=key,
                                              request_hash=req_hash, status=0,
                                              created_at=now))
            return
        except IntegrityError:
            pass
        with self.engine.begin() as conn:
            row = conn.execute(select(t).where(t.c.institution_code == owner,
                                               t.c.key == key)).one()
            if row.request_hash != req_hash:
                raise Invalid("IDEMPOTENCY_KEY_REUSED",
                               "this key was used for another request")
            if row.status:
                body = orjson.loads(row.body)
                if row.status >= 400:
                    raise ApiError(row.status, body["code"], body["message"])
                raise Replay(body)
            taken = row.created_at < now - STALE and conn.execute(update(t).where(
                t.c.institution_code == owner, t.c.key == key, t.c.status == 0,
                t.c.created_at == row.created_at).values(created_at=now)).rowcount == 1
            if not taken:
                raise Conflict("REQUEST_IN_PROGRESS", "the first request with this "
                               "key is still running; retry", {"Retry-After": "1"})

    def _store(self, owner: str, key: str, status: int, body: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(self.t).where(self.t.c.institution_code == owner,
                                              self.t.c.key == key)
                         .values(status=status, body=orjson.dumps(body).decode()))

    def _free(self, owner: str, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(self.t).where(self.t.c.institution_code == owner,
                                              self.t.c.key == key, self.t.c.status == 0))


class Replay(Exception):
    """The stored answer of an earlier call with this key."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__("replay")
        self.body = body
