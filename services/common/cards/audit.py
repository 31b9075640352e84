"""Audit chains: the rows that record what happened (usage records, ledger postings) are
chained per institution per day, in the transaction that writes them, under a key K of
the system's key store (derived from the deployment's master key, never in the database):

    hash_n = HMAC-SM3(K, hash_{n-1} || SM3(canonical JSON of row n's fields, with n))
    hash_0 = HMAC-SM3(K, "ehc-audit|<institution>|<day>")

so a database writer cannot recompute a chain after changing a row. Each chain's head
(its length and last hash) is kept apart, and sealed (signed, exported outside the store:
``seals``) so that a tail cut off with its head rolled back shows too. ``verify`` walks
every chain of a day and reports each row edited (its hash no longer follows), deleted (a
gap, a head or a seal longer than the chain) or inserted (a row outside the chain, a
repeated position, or a chain longer than its head)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Column, Integer, MetaData, String, Table, select

from ..crypto import hmac_sm3, sm3

CHAIN_COLUMNS = ("chain_day", "chain_seq", "chain_hash")


def chain_columns() -> list[Column]:
    return [Column("chain_day", String(8)), Column("chain_seq", Integer),
            Column("chain_hash", String(64))]


def heads_table(metadata: MetaData) -> Table:
    return Table("audit_heads", metadata,
                 Column("chain", String(16), primary_key=True),  # the table chained
                 Column("institution_code", String(12), primary_key=True),
                 Column("day", String(8), primary_key=True),
                 Column("seq", Integer, nullable=False),
                 Column("hash", String(64), nullable=False))


def chain_key(master: bytes, system: str) -> bytes:
    """The key a system's chains are made with (from the master key: outside the store)."""
    return hmac_sm3(master, b"audit-chain|" + system.encode())


@lru_cache(maxsize=4096)  # a day's chains: every scan of PostgreSQL's hot path asks
def genesis(institution: str, day: str, key: bytes) -> str:
    """The hash a chain (institution, CST day) starts from, keyed: no one without the key
    can forge the start of a day."""
    return hmac_sm3(key, f"ehc-audit|{institution}|{day}".encode()).hex()


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):  # one form whatever the driver returns
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def link(prev: str, fields: dict[str, Any], seq: int, key: bytes) -> str:
    digest = sm3(orjson.dumps({**fields, "_seq": seq}, option=orjson.OPT_SORT_KEYS
                              | orjson.OPT_PASSTHROUGH_DATETIME, default=_plain))
    return hmac_sm3(key, bytes.fromhex(prev) + digest).hex()


def row_fields(row: Any, skip: tuple[str, ...] = ("id", *CHAIN_COLUMNS)) -> dict[str, Any]:
    """The fields a row's link covers: all but its own ID and chain columns."""
    return {str(k): v for k, v in row._asdict().items() if k not in skip}


def append(conn, table: Table, chain: str, rows: list[dict[str, Any]],
           institution: str, day: str, key: bytes) -> list[int]:
    """Insert rows at the end of their institution's chain of the day; their IDs."""
    heads = Heads(chain, SqlCursor(conn), conn.dialect.name == "postgresql", key)
    ids = []
    for row in rows:
        seq, h = heads.next(institution, day, row)
        ids.append(conn.execute(table.insert().values(
            **row, chain_day=day, chain_seq=seq, chain_hash=h)).inserted_primary_key[0])
    heads.write()
    return ids


def verify_day(conn, table: Table, heads: Table, chain: str, day: str,
               institution_of: Callable[[Any], str], key: bytes,
               sealed: dict[tuple[str, str], tuple[int, str]]) -> dict[str, Any]:
    rows = conn.execute(select(table).where(
        (table.c.chain_day == day) | table.c.chain_day.is_(None))).all()
    found = conn.execute(select(heads).where(heads.c.chain == chain,
                                             heads.c.day == day)).all()
    return verify_chains(rows, row_fields, {(r.institution_code, r.day): (r.seq, r.hash)
                                            for r in found}, institution_of, key, sealed)


HEAD_SQL = {
    # read under a row lock (PostgreSQL; made first if missing: of two first writers the
    # second's insert waits for the first's, then does nothing, and its read waits for
    # the row), or made if missing and then read under the write lock the insert took
    # (SQLite): concurrent writers of one chain queue up instead of forking it
    "ensure": "INSERT INTO audit_heads (chain, institution_code, day, seq, hash) "
              "VALUES (?, ?, ?, 0, ?) ON CONFLICT DO NOTHING",
    "read": "SELECT seq, hash FROM audit_heads WHERE chain = ? AND institution_code = ? "
            "AND day = ?",
    "write": "UPDATE audit_heads SET seq = ?, hash = ? WHERE chain = ? AND "
             "institution_code = ? AND day = ?",
}


def _head_sql(postgres: bool) -> dict[str, str]:
    out = {k: v.replace("?", "%s") if postgres else v for k, v in HEAD_SQL.items()}
    if postgres:
        out["read"] += " FOR UPDATE"
    return out


_HEAD_SQL = {False: _head_sql(False), True: _head_sql(True)}


def head_sql(postgres: bool) -> dict[str, str]:
    """The head statements in the driver's placeholder style (PostgreSQL's read locks)."""
    return _HEAD_SQL[postgres]


@dataclass
class Heads:
    """The heads one transaction moves, read once (locked) and written back once, on a
    DB-API cursor (the hot path's) or a SQLAlchemy connection (``SqlCursor``).

    ``locked``: the transaction already holds SQLite's write lock (``BEGIN IMMEDIATE``),
    so the head is read first and made only when missing, as on PostgreSQL; otherwise
    SQLite's head is made-if-missing first, the insert taking the lock before the read."""

    chain: str
    cursor: Any
    postgres: bool
    key: bytes
    moved: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    locked: bool = False

    def next(self, institution: str, day: str, fields: dict[str, Any],
             head: tuple[int, str] | None = None) -> tuple[int, str]:
        """The next position and hash of the chain; ``head``: the head as the caller
        already read it under its lock (None: read here)."""
        key = (institution, day)
        if key not in self.moved:
            sql = head_sql(self.postgres)
            if head is None and (self.postgres or self.locked):
                # the row lock (or SQLite's write lock): made only on the day's first scan
                self.cursor.execute(sql["read"], (self.chain, institution, day))
                head = self.cursor.fetchone()
            if head is None:  # SQLite: the insert takes the write lock before the read
                self.cursor.execute(sql["ensure"], (self.chain, institution, day,
                                                    genesis(institution, day, self.key)))
                self.cursor.execute(sql["read"], (self.chain, institution, day))
                head = self.cursor.fetchone()
            self.moved[key] = tuple(head)
        seq, prev = self.moved[key]
        seq += 1
        h = link(prev, fields, seq, self.key)
        self.moved[key] = (seq, h)
        return seq, h

    def write(self) -> None:
        sql = head_sql(self.postgres)["write"]
        for (inst, day), (seq, h) in self.moved.items():
            self.cursor.execute(sql, (seq, h, self.chain, inst, day))


class SqlCursor:
    """A SQLAlchemy connection seen as the little of a DB-API cursor ``Heads`` uses."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._result: Any = None

    def execute(self, sql: str, params: tuple) -> None:
        self._result = self.conn.exec_driver_sql(sql, params)

    def fetchone(self) -> Any:
        return self._result.fetchone()


def verify_chains(rows: Sequence[Any], fields: Callable[[Any], dict[str, Any]],
                  heads: dict[tuple[str, str], tuple[int, str]],
                  institution_of: Callable[[Any], str], key: bytes,
                  sealed: dict[tuple[str, str], tuple[int, str]] | None = None
                  ) -> dict[str, Any]:
    """Every problem of the chains these rows (one day's) belong to; ``sealed`` holds the
    heads sealed outside the store, (institution, day) -> (length, hash), which the chain
    must still reach with the same hash."""
    sealed = sealed or {}
    problems: list[dict[str, Any]] = []
    chains: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        if r.chain_seq is None:
            problems.append({"row": r.id, "problem": "inserted", "detail": "outside any chain"})
            continue
        chains.setdefault((institution_of(r), r.chain_day), []).append(r)
    for where in sorted(set(chains) | set(heads) | set(sealed)):
        inst, day = where
        chain = sorted(chains.get(where, []), key=lambda r: (r.chain_seq, r.id))
        prev, expected = genesis(inst, day, key), 1
        hashes = {r.chain_seq: r.chain_hash for r in chain}
        for r in chain:
            if r.chain_seq < expected:
                problems.append({"row": r.id, "problem": "inserted",
                                 "detail": f"{inst} {day}: position {r.chain_seq} repeated"})
                continue
            if r.chain_seq > expected:
                problems.append({"row": r.id, "problem": "deleted", "detail": (
                    f"{inst} {day}: positions {expected}..{r.chain_seq - 1} missing")})
                expected = r.chain_seq
                prev = r.chain_hash  # resynchronise after the gap
            elif link(prev, fields(r), r.chain_seq, key) != r.chain_hash:
                problems.append({"row": r.id, "problem": "edited",
                                 "detail": f"{inst} {day}: position {r.chain_seq}"})
                prev = r.chain_hash
            else:
                prev = r.chain_hash
            expected += 1
        head = heads.get(where)
        last = expected - 1
        seal = sealed.get(where)
        if seal is not None and hashes.get(seal[0]) != seal[1]:
            problems.append({"row": None, "problem": "deleted" if seal[0] > last else "edited",
                             "detail": f"{inst} {day}: sealed at {seal[0]}, the chain "
                             + (f"ends at {last} (cut off, its head rolled back)"
                                if seal[0] > last else "differs there (rewritten)")})
        if head is None:
            problems.append({"row": None, "problem": "inserted",
                             "detail": f"{inst} {day}: a chain without a head"})
        elif head[0] > last:
            problems.append({"row": None, "problem": "deleted",
                             "detail": f"{inst} {day}: head at {head[0]}, chain ends at {last}"})
        elif head[0] < last:
            problems.append({"row": None, "problem": "inserted",
                             "detail": f"{inst} {day}: chain runs past its head ({head[0]})"})
        elif last and head[1] != prev:
            problems.append({"row": None, "problem": "edited",
                             "detail": f"{inst} {day}: last hash differs from the head"})
    return {"chains": len(set(chains) | set(heads) | set(sealed)), "rows": len(rows),
            "problems": problems, "clean": not problems}


def day_report(engine, heads: Table, chains: dict[str, tuple[Table, Callable[[Any], str]]],
               day: str, key: bytes,
               sealed: dict[str, dict[tuple[str, str], tuple[int, str]]] | None = None
               ) -> dict[str, Any]:
    """Every chain kind of a system for one day: ``chains`` maps a chain's name to its
    table and how a row names its institution; ``sealed`` a chain's name to its seals."""
    sealed = sealed or {}
    with engine.connect() as conn:
        out = {name: verify_day(conn, table, heads, name, day, inst, key,
                                sealed.get(name, {}))
               for name, (table, inst) in chains.items()}
    return {"day": day, **out, "clean": all(r["clean"] for r in out.values())}


def rekey_chains(conn, table: Table, chain: str, institution_of: Callable[[Any], str],
                 key: bytes) -> dict[str, int]:
    """Upgrade from release 0.1's unkeyed chains (plain SM3): every chain that still holds
    under the old scheme is re-linked under ``key``, its head with it; a chain that does
    not hold is left as it is, so that it shows as edited under the new scheme too."""
    def old_link(prev: str, fields: dict[str, Any], seq: int) -> str:
        digest = sm3(orjson.dumps({**fields, "_seq": seq}, option=orjson.OPT_SORT_KEYS
                                  | orjson.OPT_PASSTHROUGH_DATETIME, default=_plain))
        return sm3(bytes.fromhex(prev) + digest).hex()

    heads = heads_table(MetaData())
    rows = conn.execute(select(table).where(table.c.chain_seq.is_not(None))
                        .order_by(table.c.chain_day, table.c.chain_seq, table.c.id)).all()
    chains: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        chains.setdefault((institution_of(r), r.chain_day), []).append(r)
    done = {"rekeyed": 0, "left": 0}
    for (inst, day), members in chains.items():
        prev = sm3(f"ehc-audit|{inst}|{day}".encode()).hex()
        holds = True
        for n, r in enumerate(members, 1):
            prev = old_link(prev, row_fields(r), r.chain_seq)
            holds = holds and r.chain_seq == n and prev == r.chain_hash
        if not holds:
            done["left"] += 1
            continue
        new = genesis(inst, day, key)
        for r in members:
            new = link(new, row_fields(r), r.chain_seq, key)
            conn.execute(table.update().where(table.c.id == r.id).values(chain_hash=new))
        conn.execute(heads.update().where(heads.c.chain == chain,
                                          heads.c.institution_code == inst,
                                          heads.c.day == day).values(hash=new))
        done["rekeyed"] += 1
    return done
