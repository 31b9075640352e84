"""The hot path: online verification of a scanned code by an institution's terminal.

Everything that need not happen per request is done once: keys are in memory, statements
are prepared text, the body is checked by hand rather than through a pydantic model. The
replay counter and the usage record are written in the transaction that reads the card
state, so a refused request writes nothing and an accepted one writes exactly one record.

The code refresh (``Refresh``) rides the same funnel: its nonce, the app's rate count and
the reads of the card, the app's hold on it and its binding are written and read in the
transaction of the scans and refreshes in flight (one writer per process, one commit);
on PostgreSQL a batch's refreshes are a transaction of their own, before its scans'.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, cast

from sqlalchemy import Engine

from ..common.cards.audit import Heads, genesis
from ..common.cards.callers import Terminal
from ..common.crypto import sm3
from ..common.cst import digits as cst_digits
from ..common.cst import refuse_clock_skew, utc_now
from ..common.db import AsyncPg, Deferred, RawConnections, Steps
from ..common.errors import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    ServiceError,
    log_store_unavailable,
)
from ..common.fastpath import WriteFunnel
from ..common.pii import FieldCipher
from ..common.settings import Settings
from ..common.shared_store import (
    CLAIM_SQL,
    NONCES,
    PACED_TAT,
    PACES,
    SHARED_SWEPT,
    SlicedSweep,
    Swept,
    pace_params,
    pace_sql,
    pace_token,
    refused_wait,
    run_steps,
)
from ..common.signing import RATE_WINDOW_S, Admission, refuse_replay, refuse_wait
from ..rules.codes import Step
from . import qrcodes
from .cards import USABLE_STATES, refuse_unusable
from .keystore import KeyStore

TERMINAL_TYPES = frozenset((1, 2, 99))
STEPS = frozenset(Step)

_SELECT_CARD = (
    "SELECT card_id, empi, id_type, id_number_enc, name_enc, sex, birth_date, state, "
    "temporary, linked_card_id FROM cards WHERE card_id = ?"
)
_COUNT_USE = (
    "INSERT INTO code_uses (code_digest, card_id, uses, expires_at) VALUES (?, ?, 1, ?) "
    "ON CONFLICT (code_digest) DO UPDATE SET uses = code_uses.uses + 1 "
    "WHERE code_uses.uses < ? RETURNING uses"
)
_SELECT_BINDING = (
    "SELECT ssc_card_no, region FROM bindings WHERE ehc_card_id = ? AND state = 'bound'"
)
# the request's nonce is CLAIM_SQL (its rate is the caller's paced bucket: pace_sql);
# every half minute the expired nonces and buckets go, and the counts of codes past
# their expiry check (a few minutes' codes): on SQLite in the scans' transactions, the
# keyed tables a slice each; on PostgreSQL beside them (``Verifier._sweep_pg``)
SWEPT = (*SHARED_SWEPT, Swept("code_uses", "code_digest", b"", "timestamp"))
_SELECT_HELD = (  # the card's state, if this app holds it, and its active binding
    "SELECT c.state, b.ssc_card_no FROM cards c JOIN card_apps a ON a.card_id = c.card_id "
    "AND a.app_key = ? LEFT JOIN bindings b ON b.ehc_card_id = c.card_id "
    "AND b.state = 'bound' WHERE c.card_id = ?"
)
_USAGE_COLUMNS = ("card_id", "empi", "institution_code", "terminal_id", "city_code",
                  "terminal_type", "step", "code_kind", "terminal_time", "verified_at",
                  "request_id", "chain_day", "chain_seq", "chain_hash")
_RECORD_VALUES = _USAGE_COLUMNS[:-2]  # Verifier._usage's, before the chain's position and hash
_INSERT_USAGE = (f"INSERT INTO usage_records ({', '.join(_USAGE_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(_USAGE_COLUMNS))}) RETURNING id")

# PostgreSQL: each statement is a round trip and about 50 us of the driver's CPU, so a
# scan's checks and writes are two statements (and the commit), not seven. The writes of
# the first are guarded in SQL exactly as the SQLite path guards them in Python: the nonce
# only under the rate limit, the code's count only past every check of the card. The
# caller's paced bucket (``shared_store.pace_sql``) is taken after the row it is selected
# from (``first``): for a scan its audit head, so that every batch locks a head before its
# terminals' buckets (a terminal's bucket is only ever locked under its institution's
# head of the day, and heads in one order: two servers' batches never wait on each other
# in a circle).
_PG_ADMIT = """paced AS (SELECT expires_at AS tat FROM {paces}
    WHERE token = %(pace)s::text),
  rate AS (INSERT INTO {paces} (token, expires_at)
    SELECT %(pace)s::text, %(wall)s::float8 + %(interval)s::float8 FROM {first}
    WHERE %(rate_limit)s::int > 0
    ON CONFLICT (token) DO UPDATE SET expires_at = GREATEST({paces}.expires_at,
      %(wall)s::float8) + %(interval)s::float8
    WHERE GREATEST({paces}.expires_at, %(wall)s::float8) + %(interval)s::float8
      <= %(wall)s::float8 + %(window)s::float8 RETURNING 1),
  admit AS (INSERT INTO {nonces} (token, expires_at)
    SELECT %(token)s::text, %(token_expires)s::float8
    FROM {first} WHERE %(token)s::text IS NOT NULL
    AND (%(rate_limit)s::int = 0 OR EXISTS (SELECT 1 FROM rate))
    ON CONFLICT (token) DO NOTHING RETURNING token),
  gate AS (SELECT (%(token)s::text IS NULL OR EXISTS (SELECT 1 FROM admit)) AS ok)"""
_PG_ADMIT = _PG_ADMIT.replace("{nonces}", NONCES).replace("{paces}", PACES)
_PG_ADMITTED = ("(%(rate_limit)s::int = 0 OR EXISTS (SELECT 1 FROM rate)), "
                "(SELECT tat FROM paced), (SELECT count(*) FROM admit)")
_PG_CARD_CHECKS = """card AS (SELECT card_id, empi, id_type, id_number_enc, name_enc, sex,
    birth_date, state, temporary, linked_card_id FROM cards WHERE card_id = %(card_id)s::text),
  bind AS (SELECT ssc_card_no, region FROM bindings WHERE ehc_card_id = %(card_id)s::text
    AND state = 'bound' AND %(fused)s::boolean),
  passed AS (SELECT 1 FROM card, gate{also} WHERE gate.ok
    AND card.state = ANY(%(usable)s::int[]) AND (card.temporary <> 0) = %(temporary)s::boolean
    AND (NOT %(fused)s::boolean OR EXISTS (SELECT 1 FROM bind))),
  used AS (INSERT INTO code_uses (code_digest, card_id, uses, expires_at)
    SELECT %(digest)s::bytea, %(card_id)s::text, 1, %(code_expires)s::timestamp
    FROM passed WHERE %(digest)s::bytea IS NOT NULL
    ON CONFLICT (code_digest) DO UPDATE SET uses = code_uses.uses + 1
    WHERE code_uses.uses < %(use_limit)s::int RETURNING uses)"""
_PG_CHECKED = (f"{_PG_ADMITTED}, card.*, bind.ssc_card_no, bind.region, "
               "(SELECT uses FROM used), head.seq, head.hash, EXISTS (SELECT 1 FROM passed)")
_PG_SCAN = f"""WITH head AS (INSERT INTO audit_heads (chain, institution_code, day, seq, hash)
    VALUES ('usage', %(institution)s::text, %(day)s::text, 0, %(genesis)s::text)
    ON CONFLICT (chain, institution_code, day) DO UPDATE SET seq = audit_heads.seq
    RETURNING seq, hash),
  {_PG_ADMIT.format(first="head")},
  {_PG_CARD_CHECKS.format(also="")}
SELECT {_PG_CHECKED}
FROM head LEFT JOIN card ON true LEFT JOIN bind ON true"""
# A lone scan (nothing else in flight) in ONE statement, its own transaction: one round
# trip, not four (BEGIN, checks, record, COMMIT). Its chain link is made beforehand from
# the head and the card's EMPI as this process last saw them (``Verifier._seen``); the
# statement locks the head first (the one lock order) and writes anything, the record and
# the head's move included, only if both are still so (``go``). Else it writes nothing
# and the scan takes the batch path.
_PG_SCAN_ALONE = f"""WITH head AS (SELECT seq, hash FROM audit_heads WHERE chain = 'usage'
    AND institution_code = %(institution)s::text AND day = %(day)s::text FOR UPDATE),
  go AS (SELECT 1 FROM head JOIN cards ON cards.card_id = %(card_id)s::text
    AND cards.empi = %(empi)s::text WHERE head.seq = %(seen_seq)s::int
    AND head.hash = %(seen_hash)s::text),
  {_PG_ADMIT.format(first="go")},
  {_PG_CARD_CHECKS.format(also=", go")},
  rec AS (INSERT INTO usage_records ({', '.join(_USAGE_COLUMNS)})
    SELECT %(card_id)s::text, %(empi)s::text, %(institution_code)s::text,
      %(terminal_id)s::text, %(city_code)s::text, %(terminal_type)s::int, %(step)s::int,
      %(code_kind)s::text, %(terminal_time)s::text, %(verified_at)s::timestamp,
      %(request_id)s::text, %(chain_day)s::text, %(seq)s::int, %(hash)s::text
    FROM passed WHERE %(digest)s::bytea IS NULL OR EXISTS (SELECT 1 FROM used) RETURNING id),
  moved AS (UPDATE audit_heads SET seq = %(seq)s::int, hash = %(hash)s::text
    WHERE chain = 'usage' AND institution_code = %(institution)s::text
    AND day = %(day)s::text AND EXISTS (SELECT 1 FROM rec))
SELECT {_PG_CHECKED}, EXISTS (SELECT 1 FROM go), (SELECT id FROM rec)
FROM (SELECT 1) AS one LEFT JOIN head ON true LEFT JOIN card ON true LEFT JOIN bind ON true"""
_PG_RECORD = (  # the usage record and its chain's head, moved with it
    "WITH moved AS (UPDATE audit_heads SET seq = %s, hash = %s WHERE chain = 'usage' "
    "AND institution_code = %s AND day = %s) " + _INSERT_USAGE.replace("?", "%s"))
_PG_REFRESH = f"""WITH {_PG_ADMIT.format(first="(SELECT 1) AS base")}
SELECT {_PG_ADMITTED}, held.state, held.ssc_card_no, held.empi
FROM (SELECT 1) AS one LEFT JOIN (SELECT c.state, b.ssc_card_no, c.empi FROM cards c
  JOIN card_apps a ON a.card_id = c.card_id AND a.app_key = %(app_key)s::text LEFT JOIN bindings b
  ON b.ehc_card_id = c.card_id AND b.state = 'bound' WHERE c.card_id = %(card_id)s::text
  ) AS held ON true"""


class HotStore(RawConnections):
    """The hot path's statements on a raw DB-API connection per thread: no ORM or Core
    compilation per request."""

    def __init__(self, engine: Engine, *, wait: bool = True) -> None:
        super().__init__(engine, wait=wait)
        (self.select_card, self.count_use, self.insert_usage, self.select_binding,
         self.admit, self.paced_tat, self.select_held) = (
            self.sql(q) for q in (_SELECT_CARD, _COUNT_USE, _INSERT_USAGE, _SELECT_BINDING,
                                  CLAIM_SQL, PACED_TAT, _SELECT_HELD))
        self.pace = pace_sql(self.postgres)


def _field(body: dict, name: str, kind: type, max_len: int = 64) -> Any:
    value: Any = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise Invalid("INVALID_REQUEST", f"{name}: required {kind.__name__}")
    if isinstance(value, str) and not (0 < len(value) <= max_len):
        raise Invalid("INVALID_REQUEST", f"{name}: 1 to {max_len} characters")
    if isinstance(value, str) and "\x00" in value:
        raise Invalid("INVALID_REQUEST", f"{name}: must not contain NUL characters")
    return value


@dataclass(frozen=True)
class Scan:
    """A verification that passed every check needing no database."""

    code: qrcodes.ParsedCode
    term: Terminal
    city_code: str
    terminal_type: int
    step: int
    terminal_time: str
    expiry: datetime | None
    qr_text: str
    now: datetime
    request_id: str
    admission: Admission | None = None  # nonce and rate count, written with the scan
    chain: tuple[str, str] = ("", "")  # the audit chain it moves: institution, CST day


def _admission_params(a: Admission | None, wall: float) -> dict[str, Any]:
    """The PostgreSQL statements' admission part (all None: no nonce to write here)."""
    if a is None:
        return {"token": None, "bucket": None, "pace": None, "interval": None,
                "window": None, "rate_limit": 0, "wall": None, "token_expires": None}
    return {"token": a.token, "bucket": a.bucket, "rate_limit": a.limit, "wall": wall,
            "token_expires": a.expires_at, "pace": pace_token(a.bucket),
            "interval": RATE_WINDOW_S / a.limit if a.limit else None,
            "window": RATE_WINDOW_S}


def _refuse_rate(a: Admission, tat: float | None, wall: float) -> None:
    """RATE_LIMITED (the store refused the caller's paced bucket, whose tat was ``tat``):
    until it admits one more."""
    refuse_wait(refused_wait(tat, wall, RATE_WINDOW_S, a.limit), a.limit / RATE_WINDOW_S)


def _lock_order(item: Scan | Refresh) -> tuple[tuple[str, str], str]:
    """A batch's items in the order their rows are locked in every process: refreshes
    (no audit chain) by their app's bucket first, then scans by chain (its head first)
    and terminal's bucket."""
    return _chain_of(item), item.admission.bucket if item.admission else ""


def _usable_card(code: qrcodes.ParsedCode, card: Sequence | None) -> tuple:
    """The card, else CARD_NOT_FOUND (no card, or a temporary code of a card that is
    not, or the reverse); then its state must allow use."""
    if card is None or (code.kind == "temporary") != bool(card[8]):
        raise NotFound("CARD_NOT_FOUND", "no card with this ID")
    refuse_unusable(card[7])
    return tuple(card)


def _held_state(held: Sequence | None, fused: bool) -> int:
    """The card's state from (state, e-SSC card number) of a card this app holds: none
    is ``CARD_NOT_FOUND`` (existence not told); unusable, or unbound for a fused code,
    refused."""
    if held is None:
        raise NotFound("CARD_NOT_FOUND", "no such card for this app")
    refuse_unusable(held[0])
    if fused and held[1] is None:
        raise NotFound("BINDING_NOT_FOUND", "this card is not bound to an e-SSC")
    return int(held[0])


def _day_groups(items: Sequence[Scan | Refresh]) -> tuple[list[int], list[list[int]]]:
    """A batch's refreshes (their indexes), which move no chain, and its scans by the CST
    day of the chains they move, in day order: one transaction each. A transaction then
    holds one day's heads, each locked before its terminals' buckets, so two servers'
    batches across midnight cannot wait in a circle (one holding a terminal's bucket
    under today's head and wanting tomorrow's, the other holding tomorrow's and wanting
    the bucket)."""
    days: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        days.setdefault(_chain_of(item)[1], []).append(i)
    refreshes = days.pop("", [])
    return refreshes, [days[day] for day in sorted(days)]


def _lock_ordered(items: Sequence[Scan] | Sequence[Refresh]) -> list[int]:
    """A batch's indexes in the order its rows are to be locked (``_lock_order``): every
    process's batches lock in one order, so two servers' batches never wait on each
    other in a circle (a deadlock PostgreSQL would break after a second)."""
    return sorted(range(len(items)), key=lambda i: _lock_order(items[i]))


def _unsorted(order: Sequence[int], done: Sequence[Any]) -> list[Any]:
    """Results made in ``order`` (``_lock_ordered``) put back in the batch's order."""
    out: list[Any] = [None] * len(order)
    for i, result in zip(order, done, strict=True):
        out[i] = result.value if isinstance(result, Deferred) else result
    return out


def _chain_of(item: Scan | Refresh) -> tuple[str, str]:
    """The audit chain a scan moves (institution, CST day); a refresh moves none."""
    return item.chain if isinstance(item, Scan) else ("", "")


def _refuse_unbound(binding: object) -> None:
    if binding is None:
        raise Conflict("BINDING_NOT_ACTIVE",
                       "fused code of a card that is no longer bound to an e-SSC")


STALE = object()  # a lone scan found the head or the card not as last seen: nothing written


class Seen:
    """What this process last saw of the usage chains' heads (institution, day) and of
    the cards' EMPIs (which never change): PostgreSQL's lone scan makes its chain's link
    from them beforehand, and its statement checks them. A bounded memory: full, it starts
    again (what it forgets costs a scan the batch path, never a wrong record). A chain
    found moved by another (``contended``) is left to the batch path for ``quiet_s``:
    there a scan waits for the head's lock once and reads it, where two servers guessing
    again on one chain would keep losing the race to each other."""

    def __init__(self, size: int = 100_000, quiet_s: float = 1.0) -> None:
        self.size = size
        self.quiet_s = quiet_s
        self._heads: dict[tuple[str, str], tuple[int, str]] = {}
        self._empis: dict[str, str] = {}
        self._contended: dict[tuple[str, str], float] = {}

    def head(self, chain: tuple[str, str]) -> tuple[int, str] | None:
        if self._contended.get(chain, 0.0) > time.monotonic():
            return None
        return self._heads.get(chain)

    def contended(self, chain: tuple[str, str]) -> None:
        _bounded(self._contended, self.size)[chain] = time.monotonic() + self.quiet_s

    def empi(self, card_id: str) -> str | None:
        return self._empis.get(card_id)

    def moved(self, chain: tuple[str, str], head: tuple[int, str]) -> None:
        _bounded(self._heads, self.size)[chain] = head

    def card(self, card_id: str, empi: str) -> None:
        _bounded(self._empis, self.size)[card_id] = empi


def _bounded(memory: dict, size: int) -> dict:
    if len(memory) >= size:
        memory.clear()
    return memory


class Verifier:
    def __init__(self, engine: Engine, keystore: KeyStore, cipher: FieldCipher,
                 settings: Settings, chain_key: bytes) -> None:
        self.engine = engine
        self.chain_key = chain_key  # the audit chains' (seals.py)
        self.keystore = keystore
        self.cipher = cipher
        self.settings = settings
        self.limit = settings.max_verifications_per_code
        self.store = HotStore(engine)
        self.pg = AsyncPg(engine) if self.store.postgres else None
        # a lone refresh is one statement: its own transaction, in one round trip
        self.pg_one = AsyncPg(engine, autocommit=True) if self.store.postgres else None
        # the sweeps' own connection (``_sweep_pg``): no batch waits on them
        self.pg_sweeper = AsyncPg(engine, autocommit=True) if self.store.postgres else None
        self._sweeping: asyncio.Future | None = None
        if self.pg is not None:  # PostgreSQL: the batches on the loop, async
            self.funnel = WriteFunnel(self.record_batch_pg)
        else:  # SQLite: a lone write goes on the loop when the lock is free
            self.funnel = WriteFunnel(self.record_batch, inline=partial(
                self.record_batch, store=HotStore(engine, wait=False)))
        self.sweep = SlicedSweep(SWEPT, postgres=self.store.postgres)
        self._seen = Seen()

    def close(self) -> None:
        """Give back the writer thread and the hot path's connections."""
        self.funnel.close()
        self.store.drop_connection()
        if self._sweeping is not None and not self._sweeping.done():
            with contextlib.suppress(RuntimeError):  # its loop may have closed already
                self._sweeping.cancel()
        for pg in (self.pg, self.pg_one, self.pg_sweeper):
            if pg is not None:
                pg.drop()

    def _expiry(self, code: qrcodes.ParsedCode) -> datetime:
        if code.kind == "fused":  # always of the hardened form
            return qrcodes.hardened_expiry(
                code.card_id, code.block, lambda v: self.keystore.by_version("protection", v),
                fused=True)
        if self.settings.qr_format == "hardened":
            return qrcodes.hardened_expiry(
                code.card_id, code.block, lambda v: self.keystore.by_version("protection", v))
        return qrcodes.national_expiry(code.block, self.keystore.usable("protection"))

    def decode(self, qr_text: str, term: Terminal,
               now: datetime) -> tuple[qrcodes.ParsedCode, datetime | None]:
        """The code and its expiry, if this terminal may present it and it checks out."""
        try:
            code = qrcodes.parse(qr_text)
            expiry = None
            if code.kind in ("dynamic", "fused"):
                expiry = self._expiry(code)
                qrcodes.check_expiry(expiry, now, self.settings.dynamic_code_validity_s,
                                     self.settings.clock_skew_s)
        except qrcodes.CodeError as exc:
            kind = Gone if exc.code == "QR_EXPIRED" else Invalid
            raise kind(exc.code, exc.message) from exc
        if (code.kind == "static" and self.settings.qr_format == "hardened"
                and not term.physical_cards):
            raise Forbidden("STATIC_CODE_REFUSED", "static codes are accepted only from "
                            "terminals registered as physical-card readers")
        return code, expiry

    def check(self, term: Terminal, body: Any, request_id: str,
              admission: Admission | None = None) -> Scan:
        """Every check that needs no database: fields, terminal, clock, code, expiry."""
        if not isinstance(body, dict):
            raise Invalid("INVALID_REQUEST", "body must be a JSON object")
        qr_text = _field(body, "qr_text", str, 200)
        terminal_id = _field(body, "terminal_id", str, 16)
        institution_code = _field(body, "institution_code", str, 12)
        _field(body, "institution_name", str, 128)
        city_code = _field(body, "city_code", str, 6)
        terminal_type = _field(body, "terminal_type", int)
        step = _field(body, "step", int)
        terminal_time = _field(body, "time", str, 14)
        if terminal_type not in TERMINAL_TYPES:
            raise Invalid("INVALID_REQUEST", "terminal_type: 1, 2 or 99")
        if step not in STEPS:
            raise Invalid("INVALID_REQUEST", "step: 0 or 10101..10107")
        if terminal_id != term.terminal_id or institution_code != term.institution_code:
            raise Forbidden("TERMINAL_MISMATCH",
                           "terminal_id / institution_code differ from the signing terminal")
        term.refuse_claims(city_code, terminal_type)
        now = datetime.now(qrcodes.CST)
        skew = self.settings.clock_skew_s
        refuse_clock_skew(terminal_time, now, skew)
        code, expiry = self.decode(qr_text, term, now)
        return Scan(code, term, city_code, terminal_type, step, terminal_time, expiry,
                    qr_text, now, request_id, admission,
                    (term.institution_code, cst_digits(now)[:8]))

    def record_batch(self, scans: Sequence[Scan | Refresh], store: HotStore | None = None
                     ) -> list[tuple[int, tuple] | int | ServiceError]:
        """For each scan, in order and in ONE transaction: card state, replay counter,
        usage record. A refused scan writes nothing; the others commit together. A code
        refresh in the batch gets its card's state (``_refresh_one``)."""
        store = store or self.store
        out: list[tuple[int, tuple] | int | ServiceError] = []
        with store.transaction(write_lock=True) as cur:
            wall = time.time()
            if self.sweep.due(wall):
                for steps in self.sweep.steps(wall, self._sweep_cutoffs(wall)):
                    run_steps(steps, lambda sql, params: cur.execute(sql, params).fetchone())
            heads = Heads("usage", cur, store.postgres, self.chain_key, locked=True)
            for scan in scans:
                try:
                    out.append(self._record_one(cur, scan, heads) if isinstance(scan, Scan)
                               else self._refresh_one(cur, scan))
                except ServiceError as exc:
                    out.append(exc)
            heads.write()
        return out

    def _admit(self, cur, a: Admission) -> None:
        """The caller's rate (its paced bucket: one row, however busy), then the nonce
        once (else SIGNATURE_REPLAYED)."""
        store, wall = self.store, time.time()
        if a.limit:
            params = pace_params(a.bucket, wall, RATE_WINDOW_S, a.limit)
            cur.execute(store.pace, params)
            if cur.fetchone() is None:
                cur.execute(store.paced_tat, (params[0],))
                _refuse_rate(a, cur.fetchone()[0], wall)
        cur.execute(store.admit, (a.token, a.expires_at))
        refuse_replay(cur.fetchone() is not None)

    def _record_one(self, cur, scan: Scan, heads: Heads) -> tuple[int, tuple]:
        store, code = self.store, scan.code
        if scan.admission is not None:
            self._admit(cur, scan.admission)
        cur.execute(store.select_card, (code.card_id,))
        card = _usable_card(code, cur.fetchone())
        binding = None
        if code.kind == "fused":
            cur.execute(store.select_binding, (code.card_id,))
            binding = cur.fetchone()
            _refuse_unbound(binding)
        counted = self._counted(scan)
        if counted is not None:
            digest, expires = counted
            cur.execute(store.count_use, (digest, code.card_id, store.timestamp(expires),
                                          self.limit))
            self._refuse_used(cur.fetchone())
        fields, values = self._usage(scan, card)
        seq, chain_hash = heads.next(*scan.chain, fields)
        cur.execute(store.insert_usage, (*values, seq, chain_hash))
        return cur.fetchone()[0], (*card, binding)

    async def record_batch_pg(self, items: Sequence[Scan | Refresh]
                              ) -> list[tuple[int, tuple] | int | ServiceError]:
        """``record_batch`` on PostgreSQL, on the event loop (``AsyncPg``): a scan is two
        statements (``_scan_pg``), the second sent at the commit; a refresh is one
        (``_refresh_pg``), alone in autocommit (one round trip, no BEGIN or COMMIT).
        One transaction a CST day (``_day_groups``): a batch across midnight is two."""
        assert self.pg is not None and self.pg_one is not None
        self._sweep_pg(time.time())
        if len(items) == 1:  # alone: one statement, no BEGIN or COMMIT
            item = items[0]
            if isinstance(item, Refresh):
                return [await self.pg_one.run(self._refresh_pg(item))]
            lone = self._scan_pg_alone(item)
            if lone is not None and (result := await self.pg_one.run(lone)) is not STALE:
                return [result]
        out: list[Any] = [None] * len(items)
        refreshes, days = _day_groups(items)
        if refreshes:  # nothing committed before them: a failure is every caller's
            done = await self._refreshes_pg([cast(Refresh, items[i]) for i in refreshes])
            for i, result in zip(refreshes, done, strict=True):
                out[i] = result
        for n, group in enumerate(days):
            try:
                done = await self._transaction_pg([cast(Scan, items[i]) for i in group])
            except Exception as exc:
                if not n and not refreshes:  # nothing committed: every caller gets it
                    raise
                done = [exc] * len(group)  # an earlier transaction has committed
            for i, result in zip(group, done, strict=True):
                out[i] = result
        return out

    async def _refreshes_pg(self, items: Sequence[Refresh]) -> list[Any]:
        """A batch's code refreshes apart from its scans, in autocommit: their statements
        sent together, one round trip and one implicit transaction (``AsyncPg.run_all``),
        in their apps' buckets' order. An app's paced bucket is one row every refresh of
        the app moves, on every server: in the scans' transaction it was held to their
        commit, and two servers' batches took turns on it (a third of PostgreSQL's busy
        backends waiting there at 1,600 scans/s); here it is held for one round trip and
        its commit. A batch of refreshes alone is one round trip, not three."""
        assert self.pg_one is not None
        order = _lock_ordered(items)
        return _unsorted(order, await self.pg_one.run_all(
            [self._refresh_pg(items[i]) for i in order]))

    async def _transaction_pg(self, items: Sequence[Scan]) -> list[Any]:
        """A batch's scans of one CST day in one transaction."""
        assert self.pg is not None
        async with self.pg.transaction() as tx:
            heads = Heads("usage", None, True, self.chain_key, locked=True)
            # the audit heads and the terminals' buckets, locked in one order
            order = _lock_ordered(items)
            done = await tx.run_all([self._scan_pg(items[i], heads) for i in order])
        for chain, head in heads.moved.items():  # committed
            self._seen.moved(chain, head)
        return _unsorted(order, done)

    def _scan_pg(self, scan: Scan, heads: Heads) -> Steps:
        """The SQLite path's checks and writes in two statements: the checks with the
        writes they guard, the audit head among them (made if missing, locked either
        way), then (``Deferred`` to the commit: nothing in the batch reads it) the usage
        record with its chain's head as ``heads`` moved it."""
        wall, counted = time.time(), self._counted(scan)
        inst, day = scan.chain
        row = yield _PG_SCAN, self._scan_params(scan, wall, counted) | {
            "genesis": genesis(inst, day, self.chain_key)}
        card, binding = self._checked(scan, row, wall, counted)
        head = (row[16], row[17])  # made if missing, and locked, in the checks' statement
        fields, values = self._usage(scan, card)
        seq, chain_hash = heads.next(inst, day, fields, head)
        return Deferred((_PG_RECORD, (seq, chain_hash, inst, day, *values, seq, chain_hash)),
                        lambda record: (record[0], (*card, binding)))

    def _scan_pg_alone(self, scan: Scan) -> Steps | None:
        """A lone scan in one statement (``_PG_SCAN_ALONE``), its chain's link made from
        the head and the card's EMPI this process last saw; None when it has seen neither.
        Its result is ``STALE`` (nothing written) when either has moved since: the scan
        then takes the batch path, and so do its chain's for a while (``Seen``)."""
        seen, empi = self._seen.head(scan.chain), self._seen.empi(scan.code.card_id)
        if seen is None or empi is None:
            return None
        return self._scan_alone_steps(scan, seen, empi)

    def _scan_alone_steps(self, scan: Scan, seen: tuple[int, str], empi: str) -> Steps:
        wall, counted = time.time(), self._counted(scan)
        fields, values = self._usage(scan, (scan.code.card_id, empi))
        heads = Heads("usage", None, True, self.chain_key, locked=True)
        seq, chain_hash = heads.next(*scan.chain, fields, seen)
        row = yield _PG_SCAN_ALONE, self._scan_params(scan, wall, counted) | dict(
            zip(_RECORD_VALUES, values, strict=True)) | {
            "empi": empi, "seen_seq": seen[0], "seen_hash": seen[1], "seq": seq,
            "hash": chain_hash}
        if not row[19]:  # the head or the card moved: nothing written
            self._seen.contended(scan.chain)
            if row[3] is not None:  # the card's EMPI as the store has it
                self._seen.card(row[3], row[4])
            return STALE
        card, binding = self._checked(scan, row, wall, counted)
        self._seen.moved(scan.chain, (seq, chain_hash))
        return row[20], (*card, binding)

    def _scan_params(self, scan: Scan, wall: float,
                     counted: tuple[bytes, datetime] | None) -> dict[str, Any]:
        """The parameters the checks of PostgreSQL's scan statements share."""
        code = scan.code
        digest, expires = counted or (None, None)
        inst, day = scan.chain
        return _admission_params(scan.admission, wall) | {
            "card_id": code.card_id, "fused": code.kind == "fused", "digest": digest,
            "code_expires": expires, "usable": list(USABLE_STATES),
            "temporary": code.kind == "temporary", "use_limit": self.limit,
            "institution": inst, "day": day}

    def _checked(self, scan: Scan, row: Sequence, wall: float,
                 counted: tuple[bytes, datetime] | None) -> tuple[tuple, Any]:
        """The card and its binding from a scan statement's row (``_PG_CHECKED``), or
        the refusal the SQLite path would have made, in its order."""
        code = scan.code
        if scan.admission is not None:
            if not row[0]:
                _refuse_rate(scan.admission, row[1], wall)
            refuse_replay(row[2] > 0)
        card = _usable_card(code, None if row[3] is None else row[3:13])
        binding = None if row[13] is None else (row[13], row[14])
        if code.kind == "fused":
            _refuse_unbound(binding)
        if counted is not None:
            self._refuse_used(row[15])
        if not row[18]:  # SQL's checks are the ones just made in Python
            raise RuntimeError("a scan passed the checks here but not in the store")
        self._seen.card(card[0], card[1])
        return card, binding

    def _refresh_pg(self, item: Refresh) -> Steps:
        """``_refresh_one`` in one statement."""
        wall = time.time()
        rate_ok, tat, admitted, *held = yield _PG_REFRESH, _admission_params(
            item.admission, wall) | {"app_key": item.app_key, "card_id": item.card_id}
        if item.admission is not None:
            if not rate_ok:
                _refuse_rate(item.admission, tat, wall)
            refuse_replay(admitted > 0)
        if held[0] is None:
            return _held_state(None, item.fused)
        self._seen.card(item.card_id, held[2])  # its scan, next, can go alone
        return _held_state(held, item.fused)

    def _sweep_pg(self, wall: float) -> None:
        """PostgreSQL: a sweep that is due, started on its own connection beside the
        batches (a statement a table, in autocommit), which go on meanwhile: it deletes
        expired rows and skips those a batch holds (``sweep_statements``). One at a time;
        a failure is logged (its kind, no text) and the next pass tries again."""
        if (self._sweeping is not None and not self._sweeping.done()) \
                or not self.sweep.due(wall):
            return
        self._sweeping = asyncio.ensure_future(self._swept_pg(
            self.sweep.steps(wall, self._sweep_cutoffs(wall))))

    async def _swept_pg(self, tables: list[Steps]) -> None:
        assert self.pg_sweeper is not None
        try:
            for steps in tables:
                await self.pg_sweeper.run(steps)
        except Exception as exc:  # the hot path goes on; the next pass sweeps
            log_store_unavailable(exc)

    def _sweep_cutoffs(self, wall: float) -> dict[str, Any]:
        """What each swept table drops rows expired before: the shared store's tables
        epoch seconds, the codes' use counts ``_spent_before`` as the store writes it."""
        return dict.fromkeys(self.sweep.first, wall) | {
            "code_uses": self.store.timestamp(self._spent_before())}

    def _spent_before(self) -> datetime:
        """Codes that expired before this (naive UTC) can no longer pass the expiry check
        (``qrcodes.check_expiry``: their expiry plus the clock skew is past): their use
        counts are swept."""
        return utc_now() - timedelta(seconds=self.settings.clock_skew_s + 1)

    def _counted(self, scan: Scan) -> tuple[bytes, datetime] | None:
        """The replay counter's key and expiry (UTC), when the code's uses are counted:
        keyed on the decoded (card, block), never on the raw text a client may pad."""
        if scan.expiry is None or not self.limit:
            return None
        code = scan.code
        digest = sm3(f"{code.card_id}:{code.block}".encode())[:16]
        return digest, scan.expiry.astimezone(UTC).replace(tzinfo=None)

    def _refuse_used(self, uses: object) -> None:
        if uses is None:
            raise Conflict("QR_REPLAYED", f"code already verified {self.limit} time(s)")

    def _usage(self, scan: Scan, card: tuple) -> tuple[dict[str, Any], tuple]:
        """The usage record's chained fields and its column values up to the chain's
        position and hash."""
        at = scan.now.astimezone(UTC).replace(tzinfo=None)
        fields = {"card_id": card[0], "empi": card[1],
                  "institution_code": scan.term.institution_code,
                  "terminal_id": scan.term.terminal_id, "city_code": scan.city_code,
                  "terminal_type": scan.terminal_type, "step": scan.step,
                  "code_kind": scan.code.kind, "terminal_time": scan.terminal_time,
                  "verified_at": at, "request_id": scan.request_id}
        values = (card[0], card[1], scan.term.institution_code, scan.term.terminal_id,
                  scan.city_code, scan.terminal_type, scan.step, scan.code.kind,
                  scan.terminal_time, self.store.timestamp(at), scan.request_id, scan.chain[1])
        return fields, values

    def answer(self, scan: Scan, record_id: int, card: tuple) -> dict[str, Any]:
        (card_id, empi, id_type, id_enc, name_enc, sex, birth, state, temporary,
         linked, binding) = card
        answer = {
            "card_id": card_id,
            "empi": empi,
            "name": self.cipher.decrypt(name_enc) if name_enc else None,
            "sex": sex,
            "birth_date": str(birth) if birth else None,
            "id_type": id_type,
            "id_number": self.cipher.decrypt(id_enc) or None,
            "card_state": state,
            "code_kind": scan.code.kind,
            "temporary": bool(temporary),
            "linked_card_id": linked,
            "usage_record_id": record_id,
            "verified_at": cst_digits(scan.now),
        }
        if binding is not None:
            answer["binding"] = (binding[0], binding[1])
        return answer

    def _refresh_one(self, cur, item: Refresh) -> int:
        """A code refresh's nonce and rate count; then the card's state if this app holds
        it (else ``CARD_NOT_FOUND``, existence not told), usable, and for a fused code
        bound (``BINDING_NOT_FOUND``)."""
        if item.admission is not None:
            self._admit(cur, item.admission)
        cur.execute(self.store.select_held, (item.app_key, item.card_id))
        return _held_state(cur.fetchone(), item.fused)

    async def refresh_async(self, item: Refresh) -> int:
        """The refresh route's database part, through the group-commit funnel."""
        return await self.funnel.submit(item)

    async def verify_async(self, term: Terminal, body: Any, request_id: str,
                           admission: Admission | None = None) -> dict[str, Any]:
        """The route's path: the write goes through the group-commit funnel."""
        scan = self.check(term, body, request_id, admission)
        record_id, card = await self.funnel.submit(scan)
        return self.answer(scan, record_id, card)


@dataclass(frozen=True)
class Refresh:
    """A code refresh whose signature checked out (its nonce still to write)."""

    card_id: str
    app_key: str
    fused: bool
    admission: Admission | None
