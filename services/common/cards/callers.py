"""Who may call a system: institutions, their terminals and channel apps, with their
credentials. Each system keeps its own registrations (its own tables, made by
``caller_tables``) and authenticates the same way.

Credentials are cached in memory until any of them changes: every registration, disabling
or rotation bumps one generation counter in the same transaction, and each process reads
that counter at most every ``ttl_s`` (one) second. The hot path does not read credentials
per request, however many terminals scan (a province's terminals scan minutes apart: a
cache of one second per terminal missed nearly every time), and a disabled or rotated
credential is refused within that second on every worker. On the event loop (the fast
path) those reads run in a thread. Nonces and request counts live in the deployment's
shared store."""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated
from ..pii import FieldCipher
from ..shared_store import DatabaseStore, RedisStore, SharedStore, shared_events_table
from ..signing import (
    H_KEY,
    H_TS,
    Admission,
    admit_async,
    check_signature,
    nonce_expiry,
    rate_limit,
    refuse_rate,
)

INSTITUTION_RE = re.compile(r"[0-9A-Z]{12}")
DEPT_RE = re.compile(r"[0-9]{4}")


@dataclass(frozen=True)
class CallerTables:
    institutions: sa.Table
    terminals: sa.Table
    channel_apps: sa.Table
    shared_events: sa.Table  # what every worker shares (its nonces and paces beside it)
    changes: sa.Table  # one row: the generation every change of the tables above bumps


def caller_tables(metadata: sa.MetaData) -> CallerTables:
    """The registration tables, in the calling system's own metadata."""
    return CallerTables(
        sa.Table("institutions", metadata,
              sa.Column("code", sa.String(12), primary_key=True),
              sa.Column("name", sa.String(128), nullable=False),
              sa.Column("city_code", sa.String(6), nullable=False),
              sa.Column("sm2_public_key", sa.String(130)),
              sa.Column("level", sa.SmallInteger, nullable=False, default=3),  # 1, 2, 3 (tertiary)
              sa.Column("created_at", sa.DateTime, nullable=False)),
        sa.Table("terminals", metadata,
              sa.Column("terminal_id", sa.String(16), primary_key=True),
              sa.Column("institution_code", sa.String(12), nullable=False),
              sa.Column("terminal_type", sa.SmallInteger, nullable=False),
              sa.Column("secret_enc", sa.String(300), nullable=False),
              sa.Column("active", sa.SmallInteger, nullable=False, default=1),
              # may present static codes (printed on a physical card) in hardened mode
              sa.Column("physical_cards", sa.SmallInteger, nullable=False, default=0)),
        sa.Table("channel_apps", metadata,
              sa.Column("app_key", sa.String(64), primary_key=True),
              sa.Column("name", sa.String(128), nullable=False),
              sa.Column("secret_enc", sa.String(300), nullable=False),
              sa.Column("sm2_public_key", sa.String(130)),
              sa.Column("active", sa.SmallInteger, nullable=False, default=1),
              # logs residents in strongly (SMS code to the registry's phone): the entry
              sa.Column("strong_realname", sa.SmallInteger, nullable=False, default=0)),
        shared_events_table(metadata),
        changes_table(metadata),
    )


def changes_table(metadata: sa.MetaData) -> sa.Table:
    """The generation's table; made with its one row (``create_all``: a new store; the
    migrations add both to an older one)."""
    table = sa.Table("caller_changes", metadata,
                     sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
                     sa.Column("generation", sa.BigInteger, nullable=False))
    sa.event.listen(table, "after_create", _first_generation)
    return table


def _first_generation(table: sa.Table, connection: sa.Connection, **_: Any) -> None:
    connection.execute(sa.insert(table).values(id=1, generation=0))


def add_changes_table(op: Any) -> None:
    """Both card systems' migration to the callers' generation (Alembic's ``op``): the
    table as a new store's metadata makes it, its row with it (``_first_generation``)."""
    changes_table(sa.MetaData()).create(op.get_bind())


@dataclass(frozen=True)
class Terminal:
    terminal_id: str
    institution_code: str
    city_code: str
    terminal_type: int
    secret: str
    sm2_public_key: str | None
    level: int = 3  # of its institution: 1 primary, 2 secondary, 3 tertiary
    physical_cards: bool = False  # reads physical cards: may present static codes

    def refuse_claims(self, city_code: str, terminal_type: int) -> None:
        """A terminal writes into usage records only what its registration says."""
        if city_code != self.city_code or terminal_type != self.terminal_type:
            raise Forbidden("TERMINAL_REGISTRATION_MISMATCH",
                            "city_code / terminal_type differ from the terminal's "
                            "registration")


@dataclass(frozen=True)
class ChannelApp:
    app_key: str
    secret: str
    sm2_public_key: str | None
    strong_realname: bool = False  # may claim residents' existing cards (the entry)


def _registered(caller: Any, kind: str, headers: Any) -> Any:
    """The terminal or app found, else UNKNOWN_TERMINAL / UNKNOWN_APP; the message says
    when the request named none (an unsigned request, the usual first mistake)."""
    if caller is None:
        what = "channel app" if kind == "app" else kind
        raise Unauthenticated(f"UNKNOWN_{kind.upper()}", f"{what} is not registered or disabled"
                              if headers.get(H_KEY) else f"no {what} named: the request "
                              "carries no X-EHC-Key header (is it signed?)")
    return caller


class Callers:
    def __init__(self, engine: sa.Engine, tables: CallerTables, cipher: FieldCipher, *,
                 max_age_s: int, store: SharedStore,
                 ttl_s: float = 1.0, terminal_rate: float = 0.0, app_rate: float = 0.0) -> None:
        self.engine = engine
        self.tables = tables
        self.cipher = cipher
        self.max_age_s = max_age_s
        self.ttl_s = ttl_s
        self.store = store
        self.terminal_rate = terminal_rate
        self.app_rate = app_rate
        # credentials by key, each with the generation it was read under
        self._terminals: dict[str, tuple[int | None, Terminal | None]] = {}
        self._apps: dict[str, tuple[int | None, ChannelApp | None]] = {}
        self._generation: int | None = None
        self._checked_at = -math.inf

    @contextmanager
    def _changing(self) -> Iterator[sa.Connection]:
        """The transaction of a change: it bumps the generation, so every process forgets
        the credentials it holds (this one at its next lookup, once committed)."""
        c = self.tables.changes
        with self.engine.begin() as conn:
            yield conn
            conn.execute(sa.update(c).where(c.c.id == 1)
                         .values(generation=c.c.generation + 1))
        self._checked_at = -math.inf

    # --------------------------------------------------------------- registration
    def add_institution(self, code: str, name: str, city_code: str,
                        sm2_public_key: str | None, level: int = 3) -> None:
        t = self.tables
        if not INSTITUTION_RE.fullmatch(code):
            raise Invalid("INVALID_INSTITUTION_CODE", "institution code is 12 [0-9A-Z]")
        try:
            with self._changing() as conn:
                conn.execute(sa.insert(t.institutions).values(
                    code=code, name=name, city_code=city_code, sm2_public_key=sm2_public_key,
                    level=level, created_at=datetime.now(UTC).replace(tzinfo=None)))
        except IntegrityError as exc:
            raise Conflict("INSTITUTION_EXISTS", "institution already registered") from exc

    def add_terminal(self, institution_code: str, dept_code: str, terminal_type: int,
                     secret: str | None = None,
                     physical_cards: bool = False) -> tuple[str, str]:
        """Register a terminal; ``secret`` provisions the one the same terminal already
        uses with the other card system (else a new one is made)."""
        t = self.tables
        if not DEPT_RE.fullmatch(dept_code):
            raise Invalid("INVALID_DEPT_CODE", "department code is 4 digits")
        terminal_id = institution_code + dept_code
        secret = secret or secrets.token_urlsafe(32)
        with self._changing() as conn:
            inst = conn.execute(sa.select(t.institutions.c.code)
                                .where(t.institutions.c.code == institution_code)).first()
            if inst is None:
                raise NotFound("INSTITUTION_NOT_FOUND", "unknown institution")
            try:
                conn.execute(sa.insert(t.terminals).values(
                    terminal_id=terminal_id, institution_code=institution_code,
                    terminal_type=terminal_type, secret_enc=self.cipher.encrypt(secret),
                    active=1, physical_cards=int(physical_cards)))
            except IntegrityError as exc:
                raise Conflict("TERMINAL_EXISTS", "terminal already registered") from exc
        return terminal_id, secret

    def add_app(self, name: str, sm2_public_key: str | None, app_key: str | None = None,
                secret: str | None = None, strong_realname: bool = False) -> tuple[str, str]:
        """Register a channel app; ``app_key``/``secret`` provision the credentials the
        same app already holds with the other card system."""
        t = self.tables
        app_key = app_key or "app_" + secrets.token_hex(8)
        secret = secret or secrets.token_urlsafe(32)
        try:
            with self._changing() as conn:
                conn.execute(sa.insert(t.channel_apps).values(
                    app_key=app_key, name=name, secret_enc=self.cipher.encrypt(secret),
                    sm2_public_key=sm2_public_key, active=1,
                    strong_realname=int(strong_realname)))
        except IntegrityError as exc:
            raise Conflict("APP_EXISTS", "app key already registered") from exc
        return app_key, secret

    # --------------------------------------------------------------- management
    def _kind(self, kind: str) -> tuple[sa.Table, Any, str]:
        t = self.tables
        if kind == "terminal":
            return t.terminals, t.terminals.c.terminal_id, "TERMINAL_NOT_FOUND"
        return t.channel_apps, t.channel_apps.c.app_key, "APP_NOT_FOUND"

    def listing(self, kind: str) -> list[dict[str, Any]]:
        """Every terminal or app with its state; never a secret."""
        table, _, _ = self._kind(kind)
        shown = [c for c in table.c if c.name not in ("secret_enc", "sm2_public_key")]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*shown).order_by(*table.primary_key.columns)).all()
        flags = ("active", "physical_cards", "strong_realname")
        return [{k: bool(v) if k in flags else v for k, v in r._mapping.items()}
                for r in rows]

    def set_active(self, kind: str, key: str, active: bool) -> None:
        """Disable or re-enable; every worker sees it within ``ttl_s``."""
        table, pk, missing = self._kind(kind)
        with self._changing() as conn:
            if not conn.execute(sa.update(table).where(pk == key)
                                .values(active=int(active))).rowcount:
                raise NotFound(missing, f"no such {kind.replace('_', ' ')}")

    def rotate(self, kind: str, key: str, secret: str | None = None) -> str:
        """A new signing secret (``secret`` provisions the one the other card system
        already gave); the old one stops working within ``ttl_s``."""
        table, pk, missing = self._kind(kind)
        secret = secret or secrets.token_urlsafe(32)
        with self._changing() as conn:
            if not conn.execute(sa.update(table).where(pk == key)
                                .values(secret_enc=self.cipher.encrypt(secret))).rowcount:
                raise NotFound(missing, f"no such {kind.replace('_', ' ')}")
        return secret

    # --------------------------------------------------------------- lookup
    def _cached(self, cache: dict, key: str, load):
        """``load(key)`` once per generation of the credentials (None is cached too). An
        entry keeps the generation it was read under: one read before a change and kept
        after it (a thread's) is not valid under the next generation."""
        generation = self._current_generation()
        hit = cache.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1]
        return self._keep(cache, key, generation, load(key))

    @staticmethod
    def _keep(cache: dict, key: str, generation: int | None, value: Any) -> Any:
        if len(cache) > 100_000:
            cache.clear()
        cache[key] = (generation, value)
        return value

    def _current_generation(self) -> int | None:
        """The credentials' generation, read from the store at most every ``ttl_s``."""
        now = time.monotonic()
        if now >= self._checked_at + self.ttl_s:
            self._generation = self._read_generation()
            self._checked_at = now
        return self._generation

    def _read_generation(self) -> int | None:
        c = self.tables.changes
        with self.engine.connect() as conn:
            return conn.execute(sa.select(c.c.generation).where(c.c.id == 1)).scalar()

    # the hot path's forms, on the event loop: the store is read in a thread, never on
    # the loop (a slow or unreachable store would stall every request of the process)
    async def _generation_now(self) -> int | None:
        """``_current_generation``: the request that finds it due waits for the read;
        requests meanwhile go on with the generation known (a change is still seen
        within ``ttl_s`` and one read). A read overtaken by this process's own change
        (``_changing``) is not kept: the next request reads again."""
        started = time.monotonic()
        if started >= self._checked_at + self.ttl_s:
            self._checked_at = started
            try:
                generation = await asyncio.to_thread(self._read_generation)
            except BaseException:
                self._checked_at = -math.inf  # the next request tries again
                raise
            if self._checked_at == started:
                self._generation = generation
        return self._generation

    async def _cached_now(self, cache: dict, key: str, load):
        """``_cached`` for the event loop: a credential not held is read in a thread."""
        generation = await self._generation_now()
        hit = cache.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1]
        return self._keep(cache, key, generation, await asyncio.to_thread(load, key))

    def terminal(self, terminal_id: str) -> Terminal | None:
        return self._cached(self._terminals, terminal_id, self._load_terminal)

    def app(self, app_key: str) -> ChannelApp | None:
        return self._cached(self._apps, app_key, self._load_app)

    def _load_terminal(self, terminal_id: str) -> Terminal | None:
        t = self.tables
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.terminals, t.institutions.c.city_code, t.institutions.c.sm2_public_key,
                       t.institutions.c.level)
                .join(t.institutions, t.institutions.c.code == t.terminals.c.institution_code)
                .where(t.terminals.c.terminal_id == terminal_id, t.terminals.c.active == 1)
            ).first()
        return None if row is None else Terminal(
            row.terminal_id, row.institution_code, row.city_code, row.terminal_type,
            self.cipher.decrypt(row.secret_enc), row.sm2_public_key, row.level,
            bool(row.physical_cards))

    def _load_app(self, app_key: str) -> ChannelApp | None:
        t = self.tables
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.channel_apps).where(
                t.channel_apps.c.app_key == app_key, t.channel_apps.c.active == 1)).first()
        return None if row is None else ChannelApp(
            row.app_key, self.cipher.decrypt(row.secret_enc), row.sm2_public_key,
            bool(row.strong_realname))

    # --------------------------------------------------------------- authentication
    def _known_app(self, headers) -> ChannelApp:
        return _registered(self.app(headers.get(H_KEY, "")), "app", headers)

    def _known_terminal(self, headers) -> Terminal:
        return _registered(self.terminal(headers.get(H_KEY, "")), "terminal", headers)

    def authenticate_terminal(self, headers, method: str, path: str, query: str,
                              body: bytes) -> Terminal:
        term = self._known_terminal(headers)
        self._signed_by(term, headers, method, path, query, body)
        refuse_rate(self.store, term.terminal_id, self.terminal_rate)
        return term

    async def authenticate_scan(self, headers, method: str, path: str, query: str,
                                body: bytes) -> tuple[Terminal, Admission | None]:
        """The hot path's form of ``authenticate_terminal``, on the event loop: on the
        database store the nonce and the rate count are left to the scan's own transaction
        (one write, not three); with Redis they are settled here."""
        term = _registered(await self._cached_now(
            self._terminals, headers.get(H_KEY, ""), self._load_terminal), "terminal", headers)
        return term, await self._admitted(term, term.terminal_id, self.terminal_rate,
                                          headers, method, path, query, body)

    async def authenticate_app_hot(self, headers, method: str, path: str, query: str,
                                   body: bytes) -> tuple[ChannelApp, Admission | None]:
        """``authenticate_app`` for the fast path (see ``authenticate_scan``)."""
        app = _registered(await self._cached_now(
            self._apps, headers.get(H_KEY, ""), self._load_app), "app", headers)
        return app, await self._admitted(app, app.app_key, self.app_rate, headers, method,
                                         path, query, body)

    async def _admitted(self, caller, key: str, rate: float, headers, method: str,
                        path: str, query: str, body: bytes) -> Admission | None:
        """The hot path's signature check: on the database store its nonce and the rate
        count are left to the caller's batch (``Admission``); with Redis, claimed here on
        its asyncio client; in memory, here."""
        if isinstance(self.store, DatabaseStore):
            return self._admission(caller, key, rate, headers, method, path, query, body)
        if isinstance(self.store, RedisStore):
            await admit_async(self.store, self._admission(
                caller, key, rate, headers, method, path, query, body), rate)
            return None
        self._signed_by(caller, headers, method, path, query, body)
        refuse_rate(self.store, key, rate)
        return None

    def _admission(self, caller, key: str, rate: float, headers, method: str, path: str,
                   query: str, body: bytes) -> Admission:
        """The signature checked; its nonce and the caller's rate count left to write."""
        token = check_signature(headers, method, path, query, body, secret=caller.secret,
                                sm2_public_hex=caller.sm2_public_key, store=None,
                                max_age_s=self.max_age_s)
        return Admission(token, "rate:" + key, nonce_expiry(headers.get(H_TS), self.max_age_s),
                         rate_limit(rate))  # the timestamp checked: digits

    def authenticate_app(self, headers, method: str, path: str, query: str,
                         body: bytes) -> ChannelApp:
        app = self._known_app(headers)
        self._signed_by(app, headers, method, path, query, body)
        refuse_rate(self.store, app.app_key, self.app_rate)
        return app

    def _signed_by(self, caller, headers, method: str, path: str, query: str,
                   body: bytes) -> None:
        """Refuse unless the caller's signature over this request checks out."""
        check_signature(headers, method, path, query, body, secret=caller.secret,
                        sm2_public_hex=caller.sm2_public_key, store=self.store,
                        max_age_s=self.max_age_s)
