"""What every worker and every host of a system must see alike: used nonces and request
counts (rate limits, login throttling).

Three backends with one interface:

- ``RedisStore`` when ``EHC_REDIS_URL`` is set (one Redis for the whole deployment);
- ``DatabaseStore`` otherwise: a table in the system's own database, so two workers, or
  two servers on one database, refuse the same replay;
- ``MemoryStore`` for one process (unit tests, tools).

``claim(token, ttl)`` is true only the first time a token is claimed within ``ttl``;
``take(bucket, window, limit)`` records a hit when the bucket had fewer than ``limit``
within the last ``window`` seconds and answers 0, else the seconds until one frees (a
refused hit is not recorded, so a caller that keeps knocking is not locked out for
longer than the window)."""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque
from typing import Protocol

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from .settings import Settings


class SharedStore(Protocol):
    def claim(self, token: str, ttl_s: float) -> bool: ...

    def take(self, bucket: str, window_s: float, limit: int) -> float: ...


def shared_events_table(metadata: MetaData) -> Table:
    return Table(
        "shared_events", metadata,
        Column("token", String(200), primary_key=True),
        Column("bucket", String(120), nullable=False),
        Column("at", Float, nullable=False),
        Column("expires_at", Float, nullable=False),
        Index("ix_shared_events_bucket_at", "bucket", "at"),
        Index("ix_shared_events_expires", "expires_at"),
    )


class MemoryStore:
    """One process's view (a dict and deques behind a lock)."""

    def __init__(self) -> None:
        self._claims: dict[str, float] = {}
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def claim(self, token: str, ttl_s: float) -> bool:
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._claims = {k: t for k, t in self._claims.items() if t > now}
                self._next_sweep = now + 60
            if self._claims.get(token, 0.0) > now:
                return False
            self._claims[token] = now + ttl_s
            return True

    def take(self, bucket: str, window_s: float, limit: int) -> float:
        now = time.time()
        with self._lock:
            q = self._hits[bucket]
            while q and q[0] <= now - window_s:
                q.popleft()
            if len(q) >= limit:
                return q[0] + window_s - now
            q.append(now)
            return 0.0


class DatabaseStore:
    """Rows in ``shared_events``; expired rows are swept now and then by any process."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self.engine = engine
        self.table = table
        self._next_sweep = 0.0

    def _sweep(self, conn, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + 30
        conn.execute(delete(self.table).where(self.table.c.expires_at < now))

    def claim(self, token: str, ttl_s: float) -> bool:
        now = time.time()
        row = insert(self.table).values(token=token[:200], bucket="claim", at=now,
                                        expires_at=now + ttl_s)
        try:
            with self.engine.begin() as conn:
                self._sweep(conn, now)
                conn.execute(row)
        except IntegrityError:
            with self.engine.begin() as conn:  # an expired claim not swept yet is free
                taken = conn.execute(delete(self.table).where(
                    self.table.c.token == token[:200], self.table.c.expires_at < now)).rowcount
                if not taken:
                    return False
                conn.execute(row)
        return True

    def take(self, bucket: str, window_s: float, limit: int) -> float:
        now = time.time()
        t, bucket = self.table, bucket[:120]
        with self.engine.begin() as conn:
            self._sweep(conn, now)
            count, oldest = conn.execute(select(func.count(), func.min(t.c.at)).where(
                t.c.bucket == bucket, t.c.at > now - window_s)).one()
            if count >= limit:
                return float(oldest) + window_s - now
            conn.execute(insert(t).values(
                token="hit:" + secrets.token_hex(12), bucket=bucket, at=now,
                expires_at=now + window_s))
        return 0.0


class RedisStore:
    """Keys under ``prefix`` in one Redis: ``SET NX EX`` claims, sorted-set windows."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis  # imported here: only deployments that set EHC_REDIS_URL need it

        self.redis = redis.Redis.from_url(url, socket_timeout=2.0)
        self.prefix = prefix

    def claim(self, token: str, ttl_s: float) -> bool:
        ms = max(int(ttl_s * 1000), 1)
        return bool(self.redis.set(f"{self.prefix}:c:{token}", b"1", nx=True, px=ms))

    def take(self, bucket: str, window_s: float, limit: int) -> float:
        now = time.time()
        key = f"{self.prefix}:h:{bucket}"
        pipe = self.redis.pipeline()
        pipe.zremrangebyscore(key, "-inf", now - window_s)
        pipe.zrange(key, 0, 0, withscores=True)
        pipe.zcard(key)
        _, oldest, count = pipe.execute()
        if count >= limit:
            return float(oldest[0][1]) + window_s - now if oldest else window_s
        pipe.zadd(key, {secrets.token_hex(8): now})
        pipe.expire(key, max(int(window_s) + 1, 2))
        pipe.execute()
        return 0.0


def open_store(settings: Settings, system: str, engine: Engine | None,
               table: Table | None) -> SharedStore:
    """The deployment's store for one system: Redis when configured (keys under
    ``EHC_REDIS_PREFIX``), else its database."""
    if settings.redis_url:
        return RedisStore(settings.redis_url, f"{settings.redis_prefix}:{system}")
    if engine is not None and table is not None:
        return DatabaseStore(engine, table)
    return MemoryStore()


__all__ = ["DatabaseStore", "MemoryStore", "RedisStore", "SharedStore",
           "open_store", "shared_events_table"]
