"""Who may call: institutions, their terminals and channel apps, with their credentials.

Credentials are cached in memory for ``ttl_s`` seconds (the hot path must not read them
per request); a disabled terminal is refused within that time on every worker."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from ..common.errors import ApiError
from ..common.pii import FieldCipher
from ..common.signing import H_KEY, NonceCache, RateLimiter, check_signature, refuse_rate
from .tables import channel_apps, institutions, terminals

INSTITUTION_RE = re.compile(r"^[0-9A-Z]{12}$")
DEPT_RE = re.compile(r"^\d{4}$")


@dataclass(frozen=True)
class Terminal:
    terminal_id: str
    institution_code: str
    city_code: str
    terminal_type: int
    secret: str
    sm2_public_key: str | None


@dataclass(frozen=True)
class ChannelApp:
    app_key: str
    secret: str
    sm2_public_key: str | None


class Callers:
    def __init__(self, engine: Engine, cipher: FieldCipher, *, max_age_s: int,
                 ttl_s: float = 30.0, terminal_rate: float = 0.0, app_rate: float = 0.0) -> None:
        self.engine = engine
        self.cipher = cipher
        self.max_age_s = max_age_s
        self.ttl_s = ttl_s
        self.nonces = NonceCache(ttl_s=2 * max_age_s + 1)
        self.terminal_limit = RateLimiter(terminal_rate)
        self.app_limit = RateLimiter(app_rate)
        self._terminals: dict[str, tuple[float, Terminal | None]] = {}
        self._apps: dict[str, tuple[float, ChannelApp | None]] = {}

    # --------------------------------------------------------------- registration
    def add_institution(self, code: str, name: str, city_code: str,
                        sm2_public_key: str | None) -> None:
        if not INSTITUTION_RE.match(code):
            raise ApiError(422, "INVALID_INSTITUTION_CODE", "institution code is 12 [0-9A-Z]")
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(institutions).values(
                    code=code, name=name, city_code=city_code, sm2_public_key=sm2_public_key,
                    created_at=datetime.now(UTC).replace(tzinfo=None)))
        except IntegrityError as exc:
            raise ApiError(409, "INSTITUTION_EXISTS", "institution already registered") from exc

    def add_terminal(self, institution_code: str, dept_code: str,
                     terminal_type: int) -> tuple[str, str]:
        if not DEPT_RE.match(dept_code):
            raise ApiError(422, "INVALID_DEPT_CODE", "department code is 4 digits")
        terminal_id = institution_code + dept_code
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            inst = conn.execute(select(institutions.c.code)
                                .where(institutions.c.code == institution_code)).first()
            if inst is None:
                raise ApiError(404, "INSTITUTION_NOT_FOUND", "unknown institution")
            try:
                conn.execute(insert(terminals).values(
                    terminal_id=terminal_id, institution_code=institution_code,
                    terminal_type=terminal_type, secret_enc=self.cipher.encrypt(secret),
                    active=1))
            except IntegrityError as exc:
                raise ApiError(409, "TERMINAL_EXISTS", "terminal already registered") from exc
        return terminal_id, secret

    def add_app(self, name: str, sm2_public_key: str | None) -> tuple[str, str]:
        app_key = "app_" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            conn.execute(insert(channel_apps).values(
                app_key=app_key, name=name, secret_enc=self.cipher.encrypt(secret),
                sm2_public_key=sm2_public_key, active=1))
        return app_key, secret

    # --------------------------------------------------------------- lookup
    def _cached(self, cache: dict, key: str, load):  # type: ignore[no-untyped-def]
        """``load(key)`` at most every ``ttl_s`` seconds per key (None is cached too)."""
        now = time.monotonic()
        hit = cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load(key)
        if len(cache) > 100_000:
            cache.clear()
        cache[key] = (now + self.ttl_s, value)
        return value

    def terminal(self, terminal_id: str) -> Terminal | None:
        return self._cached(self._terminals, terminal_id, self._load_terminal)

    def app(self, app_key: str) -> ChannelApp | None:
        return self._cached(self._apps, app_key, self._load_app)

    def _load_terminal(self, terminal_id: str) -> Terminal | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(terminals, institutions.c.city_code, institutions.c.sm2_public_key)
                .join(institutions, institutions.c.code == terminals.c.institution_code)
                .where(terminals.c.terminal_id == terminal_id, terminals.c.active == 1)
            ).first()
        return None if row is None else Terminal(
            row.terminal_id, row.institution_code, row.city_code, row.terminal_type,
            self.cipher.decrypt(row.secret_enc), row.sm2_public_key)

    def _load_app(self, app_key: str) -> ChannelApp | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(channel_apps).where(
                channel_apps.c.app_key == app_key, channel_apps.c.active == 1)).first()
        return None if row is None else ChannelApp(
            row.app_key, self.cipher.decrypt(row.secret_enc), row.sm2_public_key)

    # --------------------------------------------------------------- authentication
    def authenticate_terminal(self, headers, method: str, path: str, query: str,  # type: ignore[no-untyped-def]
                              body: bytes) -> Terminal:
        term = self.terminal(headers.get(H_KEY, ""))
        if term is None:
            raise ApiError(401, "UNKNOWN_TERMINAL", "terminal is not registered or disabled")
        self._signed_by(term, headers, method, path, query, body)
        refuse_rate(self.terminal_limit, term.terminal_id)
        return term

    def authenticate_app(self, headers, method: str, path: str, query: str,  # type: ignore[no-untyped-def]
                         body: bytes) -> ChannelApp:
        app = self.app(headers.get(H_KEY, ""))
        if app is None:
            raise ApiError(401, "UNKNOWN_APP", "channel app is not registered or disabled")
        self._signed_by(app, headers, method, path, query, body)
        refuse_rate(self.app_limit, app.app_key)
        return app

    def _signed_by(self, caller, headers, method: str, path: str, query: str,  # type: ignore[no-untyped-def]
                   body: bytes) -> None:
        """Refuse unless the caller's signature over this request checks out."""
        check_signature(headers, method, path, query, body, secret=caller.secret,
                        sm2_public_hex=caller.sm2_public_key, nonces=self.nonces,
                        max_age_s=self.max_age_s)
