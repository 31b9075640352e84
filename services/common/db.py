"""Database engines: one SQLite file per system by default, one PostgreSQL schema each
when ``EHC_DATABASE_URL`` names a PostgreSQL server; and what a system lets the data
resources layer read (:class:`Export`, keyset pages)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    Table,
    create_engine,
    event,
    inspect,
    select,
    text,
    tuple_,
)
from sqlalchemy.engine import URL, make_url

from .errors import ServiceError, log_store_unavailable, store_unavailable
from .fastpath import StoreBusy
from .secrets_store import private_dir, private_file
from .settings import Settings


def system_url(settings: Settings, system: str) -> str:
    """The URL of one system's own store."""
    if settings.database_url is None:
        private_dir(settings.var_dir)
        return f"sqlite:///{settings.var_dir / (system + '.db')}"
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        stem = url.database.removesuffix(".db")
        return str(url.set(database=f"{stem}_{system}.db"))
    return settings.database_url


def schema_name(settings: Settings, system: str) -> str:
    return f"{settings.db_schema_prefix}{system}"


def make_engine(settings: Settings, system: str, metadata: MetaData,
                migration_args: dict[str, Any] | None = None) -> Engine:
    """The engine of one system, its store brought to the current schema (see
    :func:`upgrade`); its tables live only there. ``migration_args`` are what the
    system's data migrations need (its audit chain key)."""
    url = system_url(settings, system)
    wait_s = settings.store_timeout_s
    # hide_parameters: an error's text (and so a log line) never carries bound values
    if url.startswith("sqlite"):
        engine = create_engine(url, hide_parameters=True, pool_timeout=wait_s,
                               connect_args={"check_same_thread": False, "timeout": wait_s})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
            cur.execute("PRAGMA foreign_keys=ON")
            # bulk jobs insert random keys (card IDs, digests) into big indexes: a larger
            # page cache and less frequent checkpoints write each hot page back once per
            # checkpoint rather than once per commit
            cur.execute("PRAGMA cache_size=-131072")  # up to 128 MiB per connection
            cur.execute("PRAGMA wal_autocheckpoint=20000")  # pages (about 80 MiB of WAL)
            cur.execute("PRAGMA mmap_size=1073741824")
            cur.close()

    else:
        schema = schema_name(settings, system)
        engine = create_engine(
            url, pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size,
            pool_pre_ping=True, hide_parameters=True,
            pool_timeout=wait_s, connect_args={
                "connect_timeout": max(2, round(wait_s)),
                "options": f"-c lock_timeout={int(wait_s * 1000)}"})
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))

        @event.listens_for(engine, "connect")
        def _search_path(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f'SET search_path TO "{schema}"')
            cur.close()
            dbapi_conn.commit()

        engine.dispose()  # connections made before the listener lack the search path
    upgrade(engine, system, metadata, migration_args or {})
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        for suffix in ("", "-wal", "-shm"):
            private_file(Path(engine.url.database + suffix))
    return engine


SERVICES = Path(__file__).resolve().parents[1]


def migrations(system: str) -> Config:
    """The Alembic configuration of one system's history (``services/<system>/migrations``,
    one shared environment in ``services/common/migrations``)."""
    cfg = Config()
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("script_location", str(SERVICES / "common" / "migrations"))
    cfg.set_main_option("version_locations", str(SERVICES / system / "migrations"))
    return cfg


def upgrade(engine: Engine, system: str, metadata: MetaData,
            migration_args: dict[str, Any]) -> str | None:
    """Bring a system's store to the newest revision of its history, in one transaction:
    a new store gets today's tables and is marked at the newest revision; a store with no
    mark (made by release 0.1, which created its tables itself) gets every revision; any
    other, the revisions it lacks. A system without a history (no change to its tables
    since release 0.1) only has missing tables made. The revision it is at after."""
    if not (SERVICES / system / "migrations").is_dir():
        metadata.create_all(engine)
        return None
    cfg = migrations(system)
    with engine.begin() as conn:
        cfg.attributes.update(connection=conn, metadata=metadata, **migration_args)
        if MigrationContext.configure(conn).get_current_revision() is None and not (
                set(inspect(conn).get_table_names()) & set(metadata.tables)):
            metadata.create_all(conn)
            command.stamp(cfg, "heads")
        else:
            command.upgrade(cfg, "heads")
        return MigrationContext.configure(conn).get_current_revision()


def redacted(url: str) -> str:
    """A database URL fit for a message: its password replaced."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<malformed URL>"


def store_problem(exc: BaseException) -> str:
    """One line saying why a store could not be opened (no SQL, no password)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {text[0] if text else ''}".rstrip(": ")


def cannot_open(where: str, exc: BaseException) -> str:
    """The one line naming a store (its URL without password, or its folder) and why."""
    return f"cannot open the store at {where}: {store_problem(exc)}"


def unreachable(url: str, timeout_s: int = 5) -> str | None:
    """Why the store at ``url`` cannot be opened, in one line (no password), or None when
    a connection opens: a command that would run for minutes asks first."""
    engine = None
    try:  # an unknown driver or a malformed URL fails here too
        engine = create_engine(url, connect_args={"connect_timeout": timeout_s}
                               if url.startswith("postgresql") else {})
        with engine.connect():
            return None
    except Exception as exc:
        return cannot_open(redacted(url), exc)
    finally:
        if engine is not None:
            engine.dispose()


def rows_by_identity(conn, table, pairs) -> list:
    """Rows of ``table`` whose (id_type, id_digest) is among ``pairs``, one indexed query
    per ID type (SQLite scans the whole table for a row-value ``IN``)."""
    by_type: dict[str, list[str]] = {}
    for id_type, digest in pairs:
        by_type.setdefault(id_type, []).append(digest)
    out = []
    for id_type, digests in by_type.items():
        out += conn.execute(table.select().where(
            table.c.id_type == id_type, table.c.id_digest.in_(digests))).all()
    return out


def serial_id() -> Column:
    """An ever-growing row number: BIGINT on PostgreSQL, SQLite's own rowid."""
    return Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                  autoincrement=True)


EXPORT_SETTLE_S = 2.0  # how old a row must be to be exported (see Export.query)


class CursorInvalid(ValueError):
    """Not a cursor of this source."""


@dataclass(frozen=True)
class Export:
    """A table as the data resources layer may read it: the columns it may see (never a
    name or an ID number: EMPI and card IDs are the pseudonyms), the keys that order it
    (a cursor is the last row's keys) and the column that dates a row."""

    table: Table
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    dated_by: str
    # a field made from a column the reader may not see: name -> (column, how)
    derived: tuple[tuple[str, str, Callable[[Any], Any]], ...] = ()

    def parse_cursor(self, cursor: str) -> list[Any]:
        """The keys of a cursor (``key|key``), typed as their columns; ValueError if not."""
        parts = cursor.split("|")
        if len(parts) != len(self.keys):
            raise CursorInvalid("wrong number of cursor parts")
        out: list[Any] = []
        for part, key in zip(parts, self.keys, strict=True):
            kind = self.table.c[key].type.python_type
            if kind is int and not re.fullmatch(r"[0-9]{1,18}", part):
                raise CursorInvalid(f"{key} is a whole number")
            if kind is datetime and not re.fullmatch(r"[0-9][0-9T :.+-]{9,39}", part):
                raise CursorInvalid(f"{key} is an ISO time")
            try:
                out.append(datetime.fromisoformat(part) if kind is datetime else kind(part))
            except ValueError as exc:
                raise CursorInvalid(str(exc)) from None
        return out

    @property
    def hidden(self) -> list[str]:
        """Columns read only to derive a field from, never exported themselves."""
        return [src for _, src, _ in self.derived if src not in self.columns]

    def query(self, cursor: str | None, limit: int, settled: datetime | None = None):
        """The page's SELECT: keyset order, read along the index on the keys; only rows
        dated before ``settled`` (a transaction still open may yet commit a row with an
        earlier key: the page stops short of where that can happen, so no row is skipped)."""
        cols = [self.table.c[c] for c in (*self.columns, *self.hidden)]
        keys = [self.table.c[k] for k in self.keys]
        query = select(*cols).order_by(*keys).limit(limit)
        if settled is not None:
            query = query.where(self.table.c[self.dated_by] <= settled)
        if cursor:  # a row-value comparison: both engines seek the keys' index with it
            values = self.parse_cursor(cursor)
            query = query.where(tuple_(*keys) > tuple_(*values) if len(keys) > 1
                                else keys[0] > values[0])
        return query

    def page(self, engine: Engine, cursor: str | None, limit: int) -> dict[str, Any]:
        """Rows after ``cursor`` in key order, and the cursor of the last one
        (``CursorInvalid`` before any read for a cursor not of this source)."""
        hidden = self.hidden
        settled = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=EXPORT_SETTLE_S)
        query = self.query(cursor, limit, settled)
        with engine.connect() as conn:
            rows = [r._asdict() for r in conn.execute(query)]
        for r in rows:
            for name, src, how in self.derived:
                r[name] = how(r[src])
            for src in hidden:
                del r[src]
            for k, v in r.items():
                if isinstance(v, datetime | date):
                    r[k] = v.isoformat()
        last = "|".join(str(rows[-1][k]) for k in self.keys) if rows else cursor
        return {"rows": rows, "cursor": last, "more": len(rows) == limit,
                "keys": list(self.keys), "dated_by": self.dated_by}


def export_page(exports: dict[str, Export], engine: Engine, source: str, after: str | None,
                limit: int) -> dict[str, Any]:
    """A system's export route: the source's page after ``after`` (``EXPORT_SOURCE_UNKNOWN``,
    ``CURSOR_INVALID`` as documented)."""
    from .errors import BadRequest, NotFound

    spec = exports.get(source)
    if spec is None:
        raise NotFound("EXPORT_SOURCE_UNKNOWN", f"no such source; known: "
                       f"{', '.join(sorted(exports))}")
    try:
        return spec.page(engine, after, limit)
    except CursorInvalid:
        raise BadRequest("CURSOR_INVALID", "not a cursor of this source") from None


class RawConnections:
    """Prepared statement text on a raw DB-API connection per thread (pooled by the
    engine, so it carries the SQLite pragmas or the PostgreSQL search path): for the hot
    paths, where compiling Core statements per request would cost more than running them.
    Datetimes are written as SQLAlchemy writes them."""

    def __init__(self, engine: Engine, *, wait: bool = True, pinned: bool = True) -> None:
        """``pinned``: each thread keeps its connection (for one writer thread, or the
        event loop); otherwise every transaction takes one from the engine's pool and gives
        it back (for calls from any thread, which would otherwise hold the pool empty).
        ``wait=False`` (SQLite, pinned only: the settings stay on the connection): this
        object's connections never wait for the write lock (a locked store is
        ``StoreBusy`` at once, nothing written, the connection kept) and never checkpoint
        the WAL (another connection's commits do)."""
        assert pinned or wait, "a connection that does not wait is never given back"
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.wait = wait or self.postgres
        self.pinned = pinned
        self._local = threading.local()

    def sql(self, statement: str) -> str:
        """``?`` placeholders in the driver's own style."""
        return statement.replace("?", "%s") if self.postgres else statement

    def connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.engine.raw_connection()
            if not self.wait:
                cur = conn.cursor()
                cur.execute("PRAGMA busy_timeout=0")
                cur.execute("PRAGMA wal_autocheckpoint=0")
                cur.close()
        return conn

    def drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()

    @contextlib.contextmanager
    def transaction(self, *, write_lock: bool = False):
        """A cursor whose work commits at the end, or is rolled back on any error (and a
        broken connection is not reused). ``write_lock``: on SQLite the transaction takes
        the write lock as it begins (``BEGIN IMMEDIATE``), so what it reads stays current
        until it commits (PostgreSQL locks the rows it reads ``FOR UPDATE``)."""
        conn = self.connection() if self.pinned else self.engine.raw_connection()
        try:
            cur = conn.cursor()
            if write_lock and not self.postgres:
                cur.execute("BEGIN IMMEDIATE")
            yield cur
            conn.commit()
        except ServiceError:  # a refusal: nothing written, the connection is sound
            conn.rollback()
            raise
        except sqlite3.OperationalError as exc:
            if self.wait or "locked" not in str(exc):
                self._abandon(conn)
                raise
            conn.rollback()  # the write lock is elsewhere: nothing written
            raise StoreBusy() from exc
        except BaseException:
            self._abandon(conn)
            raise
        finally:
            if not self.pinned:
                conn.close()  # back to the pool (an abandoned one is closed for good)

    def _abandon(self, conn) -> None:
        """Roll back what can be; a broken connection is not reused."""
        with contextlib.suppress(Exception):
            conn.rollback()
        if self.pinned:
            self.drop_connection()
        else:
            with contextlib.suppress(Exception):
                conn.invalidate()

    def timestamp(self, value: datetime) -> object:
        if self.postgres:
            return value
        # SQLAlchemy's SQLite DATETIME text (isoformat is C; strftime is slow)
        return value.isoformat(sep=" ", timespec="microseconds")


Statement = tuple[str, Any]  # SQL in the driver's style, and its parameters
Steps = Generator[Statement, Any, Any]  # statements out, each one's first row back in


@dataclass
class Deferred:
    """What a ``Steps`` generator may return: its last statement, whose row nothing
    before the commit needs; the deferred statements of a transaction are sent at its
    commit, after every other statement of its batch, and ``value`` is then
    ``finish(row)``."""

    statement: Statement
    finish: Callable[[Any], Any]
    value: Any = None


class PgTransaction:
    """One transaction of ``AsyncPg``. The ``Steps`` of a batch run in lockstep: every
    generator's first statement, then every second one (``rows_of``: one round trip per
    kind of statement in a round), so a batch of any size is a few round trips, and the
    rows its statements of one kind lock are locked in the order its caller sorted it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.deferred: list[Deferred] = []

    async def run_all(self, batch: Sequence[Steps]) -> list[Any]:
        """Each generator's return value, or the ``ServiceError`` it raised (the others
        go on); a ``Deferred`` is filled in at the commit. Statements of one generator
        run in its order, and a round's statements of one kind in the batch's order."""
        out: list[Any] = [None] * len(batch)
        waiting: dict[int, Statement] = {}
        for i in range(len(batch)):
            self._advance(batch, i, None, out, waiting)
        while waiting:
            rounds = list(waiting.items())
            waiting.clear()
            rows = await rows_of(self.conn, [statement for _, statement in rounds])
            for (i, _), row in zip(rounds, rows, strict=True):
                self._advance(batch, i, row, out, waiting)
        return out

    def _advance(self, batch: Sequence[Steps], i: int, row: Any, out: list[Any],
                 waiting: dict[int, Statement]) -> None:
        try:
            waiting[i] = batch[i].send(row)  # (None starts a generator)
        except StopIteration as done:
            out[i] = done.value
            if isinstance(done.value, Deferred):
                self.deferred.append(done.value)
        except ServiceError as exc:
            out[i] = exc

    async def finish(self) -> None:
        """The deferred statements, in the order their generators finished (the caller
        then commits)."""
        rows = await rows_of(self.conn, [d.statement for d in self.deferred])
        for d, row in zip(self.deferred, rows, strict=True):
            d.value = d.finish(row)


_NAMED = re.compile(r"%\((\w+)\)s")


@functools.lru_cache(maxsize=256)
def dollar_style(sql: str) -> tuple[str, tuple[str, ...] | None]:
    """A statement in psycopg's style (``%s`` or ``%(name)s``) in PostgreSQL's own
    (``$1``...), with the names its numbers stand for (None: positional)."""
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    if _NAMED.search(sql):
        return _NAMED.sub(number, sql), tuple(names)
    position = itertools.count(1)
    return re.sub("%s", lambda _: f"${next(position)}", sql), None


def _args(params: Any, names: tuple[str, ...] | None) -> Sequence[Any]:
    return params if names is None else tuple(params[n] for n in names)


async def first_row(conn: Any, statement: Statement) -> Any:
    """One statement (prepared once per connection by asyncpg's cache); its first row."""
    text_, names = dollar_style(statement[0])
    return await conn.fetchrow(text_, *_args(statement[1], names))


async def rows_of(conn: Any, statements: Sequence[Statement]) -> list[Any]:
    """Each statement's first row. Statements of one SQL text go to the server together
    (asyncpg's ``fetchmany``: one round trip, in their order), so each of those must
    return exactly one row (a row of NULLs for "nothing"), or the rows could not be told
    apart."""
    groups: dict[str, list[int]] = {}
    for k, (sql, _) in enumerate(statements):
        groups.setdefault(sql, []).append(k)
    out: list[Any] = [None] * len(statements)
    for sql, ks in groups.items():
        if len(ks) == 1:
            out[ks[0]] = await first_row(conn, statements[ks[0]])
            continue
        text_, names = dollar_style(sql)
        rows = await conn.fetchmany(text_, [_args(statements[k][1], names) for k in ks])
        if len(rows) != len(ks):
            raise RuntimeError(f"{len(rows)} rows for {len(ks)} statements sent together: "
                               "each must return one row")
        for k, row in zip(ks, rows, strict=True):
            out[k] = row
    return out


# PostgreSQL's classes of errors that say the store, not the request, failed: connection
# (08), rolled back for a deadlock or serialization (40), out of resources (53), lock not
# available (55), shut down by an operator (57), system (58)
_PG_FAULT_CLASSES = frozenset(("08", "40", "53", "55", "57", "58"))


def _is_store_fault(exc: BaseException) -> bool:
    """A PostgreSQL fault (lost connection, lock timeout...), not the request's."""
    import asyncpg

    state = getattr(exc, "sqlstate", None)
    return ((isinstance(exc, asyncpg.PostgresError) and str(state)[:2] in _PG_FAULT_CLASSES)
            or isinstance(exc, asyncpg.InterfaceError | OSError | TimeoutError))


# libpq's own connection parameters, which asyncpg would send to the server as settings
# (and the server refuse): the engine's connect_args set the timeout and lock timeout,
# and ``AsyncPg`` its own
_LIBPQ_ONLY = frozenset((
    "connect_timeout", "options", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "client_encoding", "fallback_application_name",
    "gssencmode", "channel_binding", "sslcompression", "requiressl"))


def asyncpg_dsn(url: URL) -> str:
    """The engine's URL as asyncpg takes it: its driver's name and the parameters only
    libpq knows dropped (the rest, ``sslmode`` or ``application_name``, kept)."""
    query = {k: v for k, v in url.query.items() if k not in _LIBPQ_ONLY}
    return url.set(drivername="postgresql", query=query).render_as_string(
        hide_password=False)


class AsyncPg:
    """A hot path's PostgreSQL transactions on asyncpg, on the event loop: no thread
    switch around them, the loop free while the server works, and about half psycopg's
    CPU a statement (measured: ``docs/benchmarks.md``). One connection per loop, made on
    first use with the sessions' settings of the system's engine (search path, lock
    timeout); a failed transaction drops it (the next one reconnects). The work is
    written as ``Steps`` generators in psycopg's placeholder style, the style of the
    engine's own statements (``dollar_style``)."""

    def __init__(self, engine: Engine, *, autocommit: bool = False) -> None:
        """``autocommit``: for single statements (``first_row``), each its own
        transaction in one round trip, or one-statement ``Steps`` sent together
        (``run_all``); else for ``transaction``."""
        self.engine = engine
        self.autocommit = autocommit
        self._session: tuple[str, str] | None = None
        self._conn: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _connection(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._conn is not None and self._loop is loop and not self._conn.is_closed():
            return self._conn
        import asyncpg

        self.drop()
        if self._session is None:  # read once, off the loop (the store may be down)
            self._session = await asyncio.to_thread(self._session_settings)
        path, lock_ms = self._session
        self._conn = await asyncpg.connect(
            asyncpg_dsn(self.engine.url),
            timeout=max(2, round(int(lock_ms) / 1000)),
            server_settings={"search_path": path, "lock_timeout": lock_ms})
        self._loop = loop
        return self._conn

    def _session_settings(self) -> tuple[str, str]:
        """The search path and lock timeout (ms) the engine's connections are set up
        with (``make_engine``): the store timeout bounds connecting too."""
        with self.engine.connect() as session:
            path, lock_ms = session.exec_driver_sql(
                "SELECT current_setting('search_path'), setting FROM pg_settings "
                "WHERE name = 'lock_timeout'").one()
        return path, lock_ms

    async def first_row(self, statement: Statement) -> Any:
        """One statement, atomic on its own (``autocommit``); its first row or None."""
        assert self.autocommit, "a single statement is its own transaction"
        with self._failures_dropped():
            return await first_row(await self._connection(), statement)

    async def run(self, steps: Steps) -> Any:
        """A ``Steps`` generator of ONE statement (``autocommit``): its return value, or
        the ``ServiceError`` it raised."""
        try:
            steps.send(await self.first_row(next(steps)))
        except StopIteration as done:
            return done.value
        except ServiceError as exc:
            return exc
        raise AssertionError("one statement in autocommit, not more")

    async def run_all(self, batch: Sequence[Steps]) -> list[Any]:
        """One-statement ``Steps`` (``autocommit``), those of one text sent together
        (``rows_of``) in one round trip and ONE implicit transaction, all of them or none
        (asyncpg's ``fetchmany`` ends them with one Sync); each one's return value, or
        the ``ServiceError`` it raised."""
        assert self.autocommit, "statements sent together are their implicit transaction"
        with self._failures_dropped():
            return await PgTransaction(await self._connection()).run_all(batch)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransaction]:
        """Commits at the end; anything but a refusal (``ServiceError``) drops the
        connection, and the transaction with it."""
        assert not self.autocommit, "a transaction needs its BEGIN"
        with self._failures_dropped():
            conn = await self._connection()
            transaction = conn.transaction()
            await transaction.start()
            tx = PgTransaction(conn)
            try:
                yield tx
            except ServiceError:
                await transaction.rollback()
                raise
            await tx.finish()
            await transaction.commit()

    @contextlib.contextmanager
    def _failures_dropped(self) -> Iterator[None]:
        """Anything but a refusal (``ServiceError``) drops the connection (the next call
        reconnects); PostgreSQL's faults answer 503 ``STORE_UNAVAILABLE``."""
        try:
            yield
        except ServiceError:
            raise
        except BaseException as exc:
            self.drop()
            if not _is_store_fault(exc):
                raise
            log_store_unavailable(exc)
            raise store_unavailable() from exc

    def drop(self) -> None:
        """Close the connection without the loop (at shutdown, or after a failure)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
