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
longer than the window): exact, for login throttling, whose buckets see a few hits.
``pace(bucket, window, limit)`` is a caller's request rate: ``limit`` requests at once,
then ``limit / window`` a second (``paced``), kept as one time a bucket however busy,
so its cost does not grow with the rate it limits; it answers as ``take`` does."""

from __future__ import annotations

import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Index,
    MetaData,
    String,
    Table,
    column,
    delete,
    func,
    insert,
    select,
    table,
)
from sqlalchemy.exc import IntegrityError

from .errors import log_store_unavailable
from .settings import Settings

if TYPE_CHECKING:
    from .db import Steps


class SharedStore(Protocol):
    def claim(self, token: str, ttl_s: float) -> bool: ...

    def take(self, bucket: str, window_s: float, limit: int) -> float: ...

    def pace(self, bucket: str, window_s: float, limit: int) -> float: ...


def paced(tat: float | None, now: float, window_s: float, limit: int
          ) -> tuple[float | None, float]:
    """GCRA, the generic cell rate algorithm (a token bucket of ``limit`` requests refilled
    at ``limit / window_s`` a second, kept as one time: the bucket's theoretical arrival
    time ``tat``, None when it has none). Admitted: (the new tat, 0.0); refused: (``tat``
    unchanged, the seconds until a request would be admitted, > 0)."""
    interval = window_s / limit
    new = max(tat or now, now) + interval
    if new - now > window_s:
        return tat, new - window_s - now
    return new, 0.0


def refused_wait(tat: float | None, now: float, window_s: float, limit: int) -> float:
    """The wait of a request the store refused, from its bucket's tat as read: above 0
    even when the clock stepped past it or the read saw another worker's older tat, so a
    refusal never answers as an admission."""
    return max(paced(tat, now, window_s, limit)[1], 1e-3)


def pace_token(bucket: str) -> str:
    """A paced bucket's row of ``shared_paces`` (its token)."""
    return "pace:" + bucket[:120]


PACES = "shared_paces"  # a paced bucket's tat, one row a caller


def pace_sql(postgres: bool) -> str:
    """A paced bucket's request in one statement on ``shared_paces`` (``paced`` in SQL:
    the bucket's tat in ``expires_at``, so the sweep drops a bucket once it is full
    again; one B-tree, so moving it writes one page): the new tat, or no row when
    refused (nothing written). Parameters: token, now + interval, now, interval, now,
    interval, now + window."""
    greatest = "GREATEST" if postgres else "max"
    sql = (f"INSERT INTO {PACES} (token, expires_at) VALUES (?, ?) "
           f"ON CONFLICT (token) DO UPDATE SET expires_at = {greatest}("
           f"{PACES}.expires_at, ?) + ? "
           f"WHERE {greatest}({PACES}.expires_at, ?) + ? <= ? RETURNING expires_at")
    return sql.replace("?", "%s") if postgres else sql


def pace_params(bucket: str, now: float, window_s: float, limit: int) -> tuple:
    """``pace_sql``'s parameters."""
    interval = window_s / limit
    return (pace_token(bucket), now + interval, now, interval, now, interval,
            now + window_s)


PACED_TAT = f"SELECT expires_at FROM {PACES} WHERE token = ?"  # after a refusal


NONCES = "shared_nonces"
# a signed request's nonce, claimed once, and a caller's paced bucket: each a row in one
# B-tree (on SQLite its key is the table: no rowid, no other index), so a claim or a
# bucket's move writes one page where a row of ``shared_events`` wrote up to four (its
# table, its key and two indexes); expired rows are swept every half minute, a slice of
# keys at a time (``SlicedSweep``)
CLAIM_SQL = (f"INSERT INTO {NONCES} (token, expires_at) VALUES (?, ?) "
             "ON CONFLICT (token) DO NOTHING RETURNING token")


@dataclass(frozen=True)
class Swept:
    """A table whose rows carry ``expires_at``. ``key``: its primary key, for a table
    swept a slice of keys at a time (``first`` sorts below every key); None for a table
    swept in one statement (few rows, or an index on the expiry). ``pg_type``: the
    expiry's type on PostgreSQL."""

    table: str
    key: str | None = None
    first: Any = ""
    pg_type: str = "float8"


# the shared store's tables: the login throttles' hits (an index on their expiry), the
# nonces (by slices: a peak's six minutes of claims are over a million rows) and the
# paced buckets (a row a caller); each swept with the epoch seconds of now
SHARED_SWEPT = (Swept("shared_events"), Swept(NONCES, "token"), Swept(PACES))
SWEEP_PERIOD_S = 30.0
SLICE_KEYS = 2000


def sweep_statements(t: Swept, postgres: bool, keys: int = SLICE_KEYS) -> tuple[str, ...]:
    """A table's sweep: one ``DELETE``; or, keyed on SQLite, the key ending the next slice
    (one row, NULL past the last key), the slice's ``DELETE`` and the last slice's.

    PostgreSQL deletes each table whole, beside the writers (under MVCC a ``DELETE``
    locks only the rows it deletes; slicing along an index there costs about ten times
    the work: a heap visit a key, where the scan reads the table's pages in order,
    ``bench.bench_sweep``), and skips the expired rows a transaction holds: a request
    may write one (a paced bucket whose caller comes back after a pause; a batch several),
    and a ``DELETE`` waiting on one row while holding others it had deleted deadlocked
    with a batch coming to those (PostgreSQL broke it after a second: a batch of scans a
    second late). A skipped row goes on the next pass."""
    mark = "%s" if postgres else "?"
    if postgres:
        return (f"DELETE FROM {t.table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t.table} "
                f"WHERE expires_at < {mark}::{t.pg_type} FOR UPDATE SKIP LOCKED))",)
    if t.key is None:
        return (f"DELETE FROM {t.table} WHERE expires_at < {mark}",)
    k = t.key
    return (f"SELECT (SELECT {k} FROM {t.table} WHERE {k} > {mark} ORDER BY {k} "
            f"LIMIT 1 OFFSET {keys - 1})",
            f"DELETE FROM {t.table} WHERE {k} > {mark} AND {k} <= {mark} "
            f"AND expires_at < {mark}",
            f"DELETE FROM {t.table} WHERE {k} > {mark} AND expires_at < {mark}")


class SlicedSweep:
    """The expired rows of some tables, a pass every ``period_s``, swept by a write
    transaction a call: a keyed table's slice of ``keys`` keys a call on SQLite, the
    others whole (every table on PostgreSQL: ``sweep_statements``).

    A table keyed by random tokens has no index on its expiry (a claim writes one page,
    not two), so its sweep reads the table: on SQLite one ``DELETE`` of a peak's 1.15
    million nonces' expired twelfth held the write lock 199-222 ms, every write waiting
    (and an inline write holds the event loop); a slice of 2,000 keys is about a
    millisecond (``bench.bench_sweep``). Callers on several threads each take a table's
    next slice, never the same one; each process sweeps on its own; a slice whose
    transaction failed is swept on the next pass."""

    def __init__(self, tables: Sequence[Swept], *, postgres: bool,
                 period_s: float = SWEEP_PERIOD_S, keys: int = SLICE_KEYS) -> None:
        self.first = {t.table: t.first for t in tables}
        self.period_s = period_s
        self._sql = {t.table: sweep_statements(t, postgres, keys) for t in tables}
        self._after: dict[str, Any] = {}  # the pass's tables left: the last key swept
        self._pass = 0
        self._lock = threading.Lock()
        self.next_pass = 0.0  # epoch seconds (a test sets it to sweep now, or never)

    def due(self, now: float) -> bool:
        """Whether this transaction sweeps: a pass is under way, or the next one due."""
        return bool(self._after) or now >= self.next_pass

    def steps(self, now: float, cutoffs: Mapping[str, Any]) -> list[Steps]:
        """This call's sweep of each table the pass has left and no other call holds (a
        pass begins when one is due), as ``Steps``; the rows expired before
        ``cutoffs[table]`` go."""
        with self._lock:
            if not self._after:
                if now < self.next_pass:
                    return []
                self.next_pass = now + self.period_s
                self._pass += 1
                self._after = dict(self.first)
            taken, self._after, pass_ = self._after, {}, self._pass
        return [self._table(name, after, cutoffs[name], pass_)
                for name, after in taken.items()]

    def _table(self, name: str, after: Any, cutoff: Any, pass_: int) -> Steps:
        sql = self._sql[name]
        if len(sql) == 1:
            yield sql[0], (cutoff,)
            return
        upto = (yield sql[0], (after,))[0]
        if upto is None:  # the last slice
            yield sql[2], (after, cutoff)
            return
        yield sql[1], (after, upto, cutoff)
        with self._lock:  # the next slice's for whoever sweeps next, in this pass
            if pass_ == self._pass:
                self._after[name] = upto


def driver_row(conn: Any, sql: str, params: Any) -> Any:
    """A statement in the driver's style on a SQLAlchemy connection; its first row."""
    result = conn.exec_driver_sql(sql, params)
    return result.first() if result.returns_rows else None


def run_on(conn: Any, tables: Sequence[Steps]) -> None:
    """``SlicedSweep.steps``' tables swept on a SQLAlchemy connection, in its transaction."""
    for steps in tables:
        run_steps(steps, partial(driver_row, conn))


def sweep_with(engine: Engine, conn: Any, tables: Sequence[Steps]
               ) -> threading.Thread | None:
    """A due pass's tables: on SQLite in the caller's transaction (``conn``: a slice a
    table); on PostgreSQL beside it, on a thread and a connection of its own, so the
    caller's request does not wait for the tables' ``DELETE`` (``sweep_statements``).
    The thread, if one was started (tests wait for it)."""
    if not tables:
        return None
    if engine.dialect.name != "postgresql":
        run_on(conn, tables)
        return None
    thread = threading.Thread(target=_swept_beside, args=(engine, tables), daemon=True,
                              name="ehc-sweep")
    thread.start()
    return thread


def _swept_beside(engine: Engine, tables: Sequence[Steps]) -> None:
    """A transaction a table: a table's swept rows are let go when it is done."""
    try:
        for steps in tables:
            with engine.begin() as conn:
                run_on(conn, [steps])
    except Exception as exc:  # the next pass sweeps; the fault's kind is logged
        log_store_unavailable(exc)


def run_steps(steps: Steps, first_row: Callable[[str, Any], Any]) -> Any:
    """A ``Steps`` generator run a statement at a time: ``first_row(sql, params)`` runs
    one and gives its first row (None for none)."""
    row = None
    try:
        while True:
            row = first_row(*steps.send(row))
    except StopIteration as done:
        return done.value


def shared_events_table(metadata: MetaData) -> Table:
    """The login throttles' hits; the nonces' and paced buckets' tables (``keyed_of``)
    made beside it."""
    for name in (NONCES, PACES):
        _keyed_table(metadata, name)
    return Table(
        "shared_events", metadata,
        Column("token", String(200), primary_key=True),
        Column("bucket", String(120), nullable=False),
        Column("at", Float, nullable=False),
        Column("expires_at", Float, nullable=False),
        Index("ix_shared_events_bucket_at", "bucket", "at"),
        Index("ix_shared_events_expires", "expires_at"),
    )


def _keyed_table(metadata: MetaData, name: str) -> Table:
    return Table(name, metadata, Column("token", String(200), primary_key=True),
                 Column("expires_at", Float, nullable=False), sqlite_with_rowid=False)


def keyed_of(events: Table, name: str) -> Table:
    """The nonces' (``NONCES``) or paced buckets' (``PACES``) table made beside a
    ``shared_events`` table."""
    return events.metadata.tables[name]


def add_keyed_table(op: Any, name: str, prefix: str) -> None:
    """Both card systems' migrations to the nonces' and the paced buckets' own tables
    (Alembic's ``op``): the table as a new store's metadata makes it, with the rows of
    ``shared_events`` whose token starts with ``prefix`` and are not yet expired moved
    to it (a request claimed before the upgrade stays refused when replayed after it;
    a bucket keeps its pace)."""
    keyed, events = _keyed_table(MetaData(), name), table("shared_events", column("token"),
                                                          column("expires_at"))
    bind = op.get_bind()
    keyed.create(bind)
    moved = events.c.token.like(prefix + "%")
    bind.execute(insert(keyed).from_select(["token", "expires_at"], select(
        events.c.token, events.c.expires_at).where(moved, events.c.expires_at >= time.time())))
    bind.execute(delete(events).where(moved))


class MemoryStore:
    """One process's view (a dict and deques behind a lock)."""

    def __init__(self) -> None:
        self._claims: dict[str, float] = {}
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._paces: dict[str, float] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def claim(self, token: str, ttl_s: float) -> bool:
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._claims = {k: t for k, t in self._claims.items() if t > now}
                self._paces = {k: t for k, t in self._paces.items() if t > now}
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

    def pace(self, bucket: str, window_s: float, limit: int) -> float:
        with self._lock:
            tat, wait = paced(self._paces.get(bucket), time.time(), window_s, limit)
            if tat is not None:
                self._paces[bucket] = tat
            return wait


class DatabaseStore:
    """Rows in ``shared_events`` (login throttles' hits), ``shared_nonces`` (claims) and
    ``shared_paces`` (paced buckets); expired rows are swept now and then by any
    process."""

    def __init__(self, engine: Engine, table: Table) -> None:
        self.engine = engine
        self.table = table
        self.nonces = keyed_of(table, NONCES)
        self.postgres = engine.dialect.name == "postgresql"
        self.sweep = SlicedSweep(SHARED_SWEPT, postgres=self.postgres)
        self.sweeping: threading.Thread | None = None  # PostgreSQL's last pass beside

    def _sql(self, statement: str) -> str:
        """``?`` placeholders in the driver's own style."""
        return statement.replace("?", "%s") if self.postgres else statement

    def _sweep(self, conn, now: float) -> None:
        """A due sweep (``sweep_with``)."""
        self.sweeping = sweep_with(self.engine, conn, self.sweep.steps(
            now, dict.fromkeys(self.sweep.first, now))) or self.sweeping

    def claim(self, token: str, ttl_s: float) -> bool:
        now = time.time()
        nonces = self.nonces
        row = insert(nonces).values(token=token[:200], expires_at=now + ttl_s)
        try:
            with self.engine.begin() as conn:
                self._sweep(conn, now)
                conn.execute(row)
        except IntegrityError:
            with self.engine.begin() as conn:  # an expired claim not swept yet is free
                taken = conn.execute(delete(nonces).where(
                    nonces.c.token == token[:200], nonces.c.expires_at < now)).rowcount
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

    def pace(self, bucket: str, window_s: float, limit: int) -> float:
        """``paced`` in one statement (``pace_sql``), atomic however many workers share
        the bucket; on a refusal the bucket's tat is read for the wait."""
        now = time.time()
        params = pace_params(bucket, now, window_s, limit)
        with self.engine.begin() as conn:
            self._sweep(conn, now)
            if conn.exec_driver_sql(pace_sql(self.postgres), params).first() is not None:
                return 0.0
            tat = conn.exec_driver_sql(self._sql(PACED_TAT), (params[0],)).scalar()
        return refused_wait(tat, now, window_s, limit)


# a rate window's hit, atomically: drop the hits older than the window, refuse when full
# (the seconds until the oldest leaves it, as text: Lua numbers come back as integers),
# else add this one
_TAKE_LUA = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('EXPIRE', KEYS[1], math.max(math.floor(window) + 1, 2))
return '0'
"""


def _pace_lua(key: str) -> str:
    """A paced bucket's request, atomically (``paced`` in Lua): the bucket's tat is one
    key, kept while it is ahead of now; the wait comes back as text (Lua numbers come back
    as integers). ARGV[1..3]: now, interval, window."""
    return f"""
local now, interval, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local new = math.max(tonumber(redis.call('GET', {key}) or 0), now) + interval
if new - now > window then
  return tostring(new - window - now)
end
redis.call('SET', {key}, string.format('%.6f', new), 'PX',
           math.ceil((new - now) * 1000) + 1000)
return '0'
"""


_PACE_LUA = _pace_lua("KEYS[1]")
# a signed request's admission in one round trip: its nonce claimed (KEYS[1], for
# ARGV[4] ms) and, when it was new and the caller has a limit (ARGV[5] not 0), its paced
# bucket (KEYS[2]) moved; '-1' for a nonce used already, else the wait
_ADMIT_LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[4]) then
  return '-1'
end
if ARGV[5] == '0' then
  return '0'
end
""" + _pace_lua("KEYS[2]")


class RedisStore:
    """Keys under ``prefix`` in one Redis: ``SET NX PX`` claims, sorted-set windows and
    paced buckets (one script a request, so two workers cannot both take the last place).
    ``admit_async`` is a signed request's claim and pace in one script on redis-py's
    asyncio client, for the event loop (one client per loop): the hot path never waits on
    Redis with the loop held, and waits once a request."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis  # imported here: only deployments that set EHC_REDIS_URL need it

        self.url = url
        self.redis = redis.Redis.from_url(url, socket_timeout=SOCKET_TIMEOUT_S)
        self.prefix = prefix
        self._take = self.redis.register_script(_TAKE_LUA)
        self._pace = self.redis.register_script(_PACE_LUA)
        self._on: tuple[Any, Any, Any] | None = None  # the loop's client and script

    def claim(self, token: str, ttl_s: float) -> bool:
        return bool(self.redis.set(**self._claim_args(token, ttl_s)))

    def take(self, bucket: str, window_s: float, limit: int) -> float:
        keys = [f"{self.prefix}:h:{bucket}"]
        return float(self._take(keys=keys, args=[
            repr(time.time()), repr(float(window_s)), limit, secrets.token_hex(8)]))

    def pace(self, bucket: str, window_s: float, limit: int) -> float:
        keys, args = self._pace_args(bucket, window_s, limit)
        return float(self._pace(keys=keys, args=args))

    async def admit_async(self, token: str, ttl_s: float, bucket: str, window_s: float,
                          limit: int) -> float | None:
        """``claim`` then, for a new nonce and a caller with a ``limit``, ``pace``, in one
        round trip: None when the nonce was used already, else the wait (0: admitted).
        One Redis, not a cluster: the two keys need not share a slot."""
        _, admit = self._on_loop()
        claim = self._claim_args(token, ttl_s)
        keys, args = self._pace_args(bucket, window_s, limit or 1)  # unused for 0
        wait = float(await admit(keys=[claim["name"], *keys],
                                 args=[*args, claim["px"], limit]))
        return None if wait < 0 else wait

    async def ping_async(self) -> None:
        """Raises unless Redis answers (readiness)."""
        client, _ = self._on_loop()
        await client.ping()

    def _claim_args(self, token: str, ttl_s: float) -> dict[str, Any]:
        return {"name": f"{self.prefix}:c:{token}", "value": b"1", "nx": True,
                "px": max(int(ttl_s * 1000), 1)}

    def _pace_args(self, bucket: str, window_s: float, limit: int) -> tuple[list, list]:
        return ([f"{self.prefix}:p:{bucket}"],
                [repr(time.time()), repr(window_s / limit), repr(float(window_s))])

    def _on_loop(self) -> tuple[Any, Any]:
        """The asyncio client of the running loop (a server's one loop; made again for
        another, as in tests), and its admission script."""
        import asyncio

        import redis.asyncio

        loop = asyncio.get_running_loop()
        if self._on is None or self._on[2] is not loop:
            client = redis.asyncio.Redis.from_url(self.url, socket_timeout=SOCKET_TIMEOUT_S)
            self._on = (client, client.register_script(_ADMIT_LUA), loop)
        return self._on[0], self._on[1]


SOCKET_TIMEOUT_S = 2.0


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
           "add_keyed_table", "keyed_of", "open_store", "shared_events_table"]
