"""Sealed audit heads: what a database writer cannot roll back.

A keyed chain stops a writer from rewriting rows, but not from cutting off the newest
rows and setting the head back to the last one kept (that head is a real, earlier head).
So each system signs (SM2, its system key, whose private half the store holds only
encrypted under the master key) each chain's head of the day, and exports the seal twice
outside its store: to a file of its own (``<var>/audit-seals/<system>/<day>.json``) and
to the other card system, which checks the signature and keeps the longest head it was
sent. A seal is never lowered in either place. ``verify`` then requires every chain to
reach each sealed head with the same hash."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from ..crypto import sm2_sign, sm2_verify
from ..errors import ServiceError
from ..peer import PeerClient
from ..pii import FieldCipher
from ..secrets_store import private_dir, private_file
from .audit import chain_key, rekey_chains
from .system_key import load_or_create

Sealed = dict[str, dict[tuple[str, str], tuple[int, str]]]  # chain -> (inst, day) -> head


def received_seals_table(metadata: MetaData) -> Table:
    """The other system's seals, as it sent them (the longest head of each chain)."""
    return Table("received_seals", metadata,
                 Column("system", String(8), primary_key=True),
                 Column("chain", String(16), primary_key=True),
                 Column("institution_code", String(12), primary_key=True),
                 Column("day", String(8), primary_key=True),
                 Column("seq", Integer, nullable=False),
                 Column("hash", String(64), nullable=False),
                 Column("signature", String(160), nullable=False))


def statement(system: str, seal: dict[str, Any]) -> bytes:
    """The bytes a seal's signature covers."""
    return (f"ehc-audit-seal|{system}|{seal['chain']}|{seal['institution_code']}|"
            f"{seal['day']}|{seal['seq']}|{seal['hash']}").encode()


def longest(seals: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The longest seal of each (chain, institution, day)."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for s in seals:
        key = (s["chain"], s["institution_code"], s["day"])
        if key not in out or s["seq"] > out[key]["seq"]:
            out[key] = s
    return out


@dataclass
class Sealer:
    system: str  # "ehc" or "essc": the name its seals are signed under
    engine: Engine
    heads: Table  # this system's audit heads
    received: Table  # the other system's seals
    chain_key: bytes  # the chains' HMAC-SM3 key (never in the store)
    private_hex: str
    public_hex: str
    folder: Path  # where its own seals are exported

    # ------------------------------------------------------------------ own seals
    def seal(self, day: str) -> list[dict[str, Any]]:
        """Sign every head of ``day`` (YYYYMMDD) and export it to the file; the file's
        seals (never lowered: a head now shorter than its seal keeps the seal)."""
        h = self.heads.c
        with self.engine.connect() as conn:
            rows = conn.execute(select(self.heads).where(h.day == day)).all()
        fresh = [{"chain": r.chain, "institution_code": r.institution_code, "day": r.day,
                  "seq": r.seq, "hash": r.hash} for r in rows if r.seq > 0]
        for s in fresh:
            s["signature"] = sm2_sign(self.private_hex, statement(self.system, s)).hex()
        kept = longest(self.exported(day) + fresh)
        seals = [kept[k] for k in sorted(kept)]
        path = self._file(day)
        private_dir(path.parent)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(seals))
        private_file(tmp)
        os.replace(tmp, path)
        return seals

    def exported(self, day: str) -> list[dict[str, Any]]:
        """The seals in this system's own file for ``day``."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            data = orjson.loads(self._file(day).read_bytes())
            return data if isinstance(data, list) else []
        return []

    def _file(self, day: str) -> Path:
        return self.folder / f"{day}.json"

    # ------------------------------------------------------------------ the peer's seals
    def hold(self, system: str, seals: list[dict[str, Any]], public_hex: str) -> int:
        """Keep the other system's seals whose signature holds (the longer of what is
        held and what came); how many were valid."""
        t = self.received
        valid = [s for s in seals if signed_by(public_hex, system, s)]
        for s in longest(valid).values():
            where = (t.c.system == system, t.c.chain == s["chain"],
                     t.c.institution_code == s["institution_code"], t.c.day == s["day"])
            values = {k: s[k] for k in ("seq", "hash", "signature")}
            with self.engine.begin() as conn:
                moved = conn.execute(update(t).where(*where, t.c.seq < s["seq"])
                                     .values(**values)).rowcount
                if not moved:
                    with contextlib.suppress(IntegrityError), conn.begin_nested():
                        conn.execute(insert(t).values(system=system, chain=s["chain"],
                                                      institution_code=s["institution_code"],
                                                      day=s["day"], **values))
        return len(valid)

    def held(self, system: str, day: str) -> list[dict[str, Any]]:
        t = self.received
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.system == system, t.c.day == day)).all()
        return [{"chain": r.chain, "institution_code": r.institution_code, "day": r.day,
                 "seq": r.seq, "hash": r.hash, "signature": r.signature} for r in rows]

    # ------------------------------------------------------------------ checking
    def sealed(self, seals: list[dict[str, Any]]) -> tuple[Sealed, int]:
        """The longest validly signed head per chain, and how many seals did not hold
        (a forged or altered seal is itself a finding)."""
        good = [s for s in seals if signed_by(self.public_hex, self.system, s)]
        out: Sealed = {}
        for (chain, inst, day), s in longest(good).items():
            out.setdefault(chain, {})[(inst, day)] = (s["seq"], s["hash"])
        return out, len(seals) - len(good)


def signed_by(public_hex: str, system: str, seal: Any) -> bool:
    """A well-formed seal whose signature holds under ``system``'s public key."""
    return _well_formed(seal) and sm2_verify(public_hex, statement(system, seal),
                                             bytes.fromhex(seal["signature"]))


def _well_formed(s: Any) -> bool:
    try:
        return (isinstance(s, dict) and isinstance(s["seq"], int) and s["seq"] > 0
                and all(isinstance(s[k], str) for k in ("chain", "institution_code", "day",
                                                         "hash", "signature"))
                and len(s["chain"]) <= 16 and len(s["institution_code"]) <= 12
                and len(s["day"]) == 8 and len(s["hash"]) == 64
                and len(bytes.fromhex(s["signature"])) <= 80)
    except (KeyError, ValueError):
        return False


class SealExchange(PeerClient):
    """A client of the other card system's seal routes (mixed into its peer client)."""

    prefix = ""  # the other system's path prefix, e.g. /ehc/v1

    async def send_seals(self, seals: list[dict[str, Any]]) -> dict[str, Any]:
        return await self.post(f"{self.prefix}/peer/audit-seals", {"seals": seals})

    async def audit_seals(self, day: str) -> list[dict[str, Any]]:
        """Our seals of ``day`` as the other system holds them."""
        return await self.get(f"{self.prefix}/peer/audit-seals", {"day": day})


async def seal_and_export(sealer: Sealer, peer: SealExchange | None, day: str
                          ) -> dict[str, Any]:
    """Seal the day's heads into the file, then send them to the other system."""
    seals = await run_in_threadpool(sealer.seal, day)
    sent: int | str | None = None
    if peer is not None:
        try:
            sent = (await peer.send_seals(seals))["held"]
        except ServiceError as exc:  # kept in the file; sent again at the next seal
            sent = exc.code
    return {"day": day, "sealed": len(seals), "peer_held": sent}


async def verify_sealed(side: Any, day: str) -> dict[str, Any]:
    """The day's chains of a card system checked against its key and every seal found:
    its own file and the other system's copy (when it answers)."""
    sealer: Sealer = side.sealer
    own = sealer.exported(day)
    copy: list[dict[str, Any]] | None = None
    if side.fusion is not None:
        with contextlib.suppress(ServiceError):
            copy = await side.fusion.peer.audit_seals(day)
    sealed, invalid = sealer.sealed(own + (copy or []))
    report = await run_in_threadpool(side.usage.audit_day, side.engine, day,
                                     sealer.chain_key, sealed)
    report["seals"] = {"file": len(own), "peer": None if copy is None else len(copy),
                       "invalid": invalid}
    if invalid:
        report["clean"] = False
    return report


def open_sealer(system: str, engine: Engine, heads: Table, received: Table, keys: Table,
                master: bytes, cipher: FieldCipher, var_dir: Path) -> Sealer:
    """A card system's sealer: its chain key from the master key, its SM2 system key."""
    private_hex, public_hex = load_or_create(engine, keys, cipher)
    return Sealer(system, engine, heads, received, chain_key(master, system), private_hex,
                  public_hex, var_dir / "audit-seals" / system)


def upgrade_to_sealed_chains(conn: Any, tables: dict[str, Table], key: bytes,
                             chains: dict[str, tuple[str, Any]]) -> None:
    """Each card system's first migration from release 0.1: the table of the other
    system's seals, and every chain (``table: (chain, institution of a row)``) re-linked
    under the chain key."""
    received_seals_table(MetaData()).create(conn)
    for table, (chain, institution_of) in chains.items():
        rekey_chains(conn, tables[table], chain, institution_of, key)
