"""The two-card binding (安全绑定), the same on both sides: record, signatures, storage.

A binding record names the EHC card (and EMPI), the e-SSC card and its insurance region,
its state (``bound`` / ``unbound``), a version (each bind or unbind is a new version) and
a time. Each side signs records in batches with its SM2 key:

    leaf   = SM3(0x00 || canonical JSON of the record)
    digest = SM3("EHC-BINDING-BATCH" || 0x00 || count (4 bytes) || leaf_1 || ... || leaf_n)
    signature = SM2(system key, digest), default user ID

A single binding is a batch of one. Both sides store every record with both proofs (the
batch's leaves, signature and the record's index), so either can prove a binding to the
other (or to anyone holding the two public keys) and neither is the only source of truth.
Batches make the bulk auto-opening cost one signature per thousand bindings, not one each.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import orjson
import sqlalchemy as sa

from ..crypto import sm2_sign, sm2_verify, sm3
from ..errors import Invalid, NotFound

SIDES = ("ehc", "essc")
_BATCH_TAG = b"EHC-BINDING-BATCH\x00"
_FIELDS = {
    "binding_id": re.compile(r"[0-9a-f]{32}"),
    "ehc_card_id": re.compile(r"[0-9A-F]{64}"),
    "empi": re.compile(r"[0-9A-Fa-f]{64}"),
    "ssc_card_no": re.compile(r"[0-9]{20}"),
    "region": re.compile(r"[0-9]{6}"),
    "state": re.compile(r"(bound|unbound)"),
    "at": re.compile(r"[0-9]{4}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9](\.[0-9]+)?"),
}
MAX_BATCH = 2000


def binding_id(ehc_card_id: str, ssc_card_no: str) -> str:
    """One ID per pair of cards; re-binding the same pair makes a new version of it."""
    return sm3(f"{ehc_card_id}|{ssc_card_no}".encode()).hex()[:32]


def make_record(ehc_card_id: str, empi: str, ssc_card_no: str, region: str, state: str,
                version: int) -> dict[str, Any]:
    return {
        "binding_id": binding_id(ehc_card_id, ssc_card_no), "ehc_card_id": ehc_card_id,
        "empi": empi, "ssc_card_no": ssc_card_no, "region": region, "state": state,
        "version": version, "at": datetime.now(UTC).replace(tzinfo=None).isoformat(),
    }


def check_record(record: Any) -> dict[str, Any]:
    """The record, if it is well formed; 422 BINDING_RECORD_INVALID otherwise."""
    if not isinstance(record, dict) or set(record) != {*_FIELDS, "version"}:
        raise Invalid("BINDING_RECORD_INVALID", "binding record has the wrong fields")
    for name, pattern in _FIELDS.items():
        if not isinstance(record[name], str) or not pattern.fullmatch(record[name]):
            raise Invalid("BINDING_RECORD_INVALID", f"binding record: bad {name}")
    version = record["version"]
    if not isinstance(version, int) or isinstance(version, bool) or not 0 < version < 2**31:
        raise Invalid("BINDING_RECORD_INVALID", "binding record: bad version")
    if record["binding_id"] != binding_id(record["ehc_card_id"], record["ssc_card_no"]):
        raise Invalid("BINDING_RECORD_INVALID", "binding ID does not match the cards")
    return record


def canonical(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def leaf(record: dict[str, Any]) -> bytes:
    return sm3(b"\x00" + canonical(record))


def batch_digest(leaves: bytes) -> bytes:
    if not leaves or len(leaves) % 32:
        raise ValueError("leaves are a non-empty concatenation of 32-byte hashes")
    return sm3(_BATCH_TAG + (len(leaves) // 32).to_bytes(4, "big") + leaves)


@dataclass(frozen=True)
class SignedBatch:
    """One side's signature over a batch of records."""

    signer: str
    leaves: bytes
    signature: bytes

    @cached_property
    def batch_id(self) -> str:
        return f"{self.signer}-{batch_digest(self.leaves).hex()[:32]}"

    def verify(self, public_hex: str) -> bool:
        try:
            return sm2_verify(public_hex, batch_digest(self.leaves), self.signature)
        except ValueError:
            return False

    def to_json(self) -> dict[str, str]:
        return {"signer": self.signer, "leaves": self.leaves.hex(),
                "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, data: Any) -> SignedBatch:
        try:
            signer, leaves, sig = data["signer"], data["leaves"], data["signature"]
            if signer not in SIDES or len(leaves) > 64 * MAX_BATCH or len(sig) > 200:
                raise ValueError(signer)
            return cls(signer, bytes.fromhex(leaves), bytes.fromhex(sig))
        except (KeyError, TypeError, ValueError) as exc:
            raise Invalid("BINDING_SIGNATURE_INVALID", "malformed signed batch") from exc


def sign_batch(signer: str, private_hex: str, records: list[dict[str, Any]]) -> SignedBatch:
    leaves = b"".join(leaf(r) for r in records)
    return SignedBatch(signer, leaves, sm2_sign(private_hex, batch_digest(leaves)))


def holds(batch: SignedBatch, index: int, record: dict[str, Any]) -> bool:
    """True when the batch holds ``record`` at ``index`` (its signature checked apart)."""
    return 0 <= index < len(batch.leaves) // 32 and (
        batch.leaves[32 * index:32 * index + 32] == leaf(record))


def verify_proof(record: dict[str, Any], batch: SignedBatch, index: int,
                 public_hex: str) -> bool:
    """True when ``batch`` is validly signed and holds ``record`` at ``index``."""
    return holds(batch, index, record) and batch.verify(public_hex)


def binding_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """(bindings, binding_batches) in a system's own metadata. ``bindings`` holds each
    pair's latest complete version with both proofs (the coordinating EHC side keeps
    bindings sent but not yet countersigned apart, in ``binding_pending``); the batches
    hold every signature the proofs rest on."""
    bindings = sa.Table(
        "bindings", metadata,
        sa.Column("binding_id", sa.String(32), primary_key=True),
        sa.Column("ehc_card_id", sa.String(64), nullable=False),
        sa.Column("empi", sa.String(64), nullable=False),
        sa.Column("ssc_card_no", sa.String(20), nullable=False),
        sa.Column("region", sa.String(6), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("ehc_batch", sa.String(40), nullable=False),
        sa.Column("ehc_index", sa.Integer, nullable=False),
        sa.Column("essc_batch", sa.String(40)),
        sa.Column("essc_index", sa.Integer),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Index("ix_binding_ehc", "ehc_card_id"),
        sa.Index("ix_binding_ssc", "ssc_card_no"),
        sa.Index("ix_binding_updated", "updated_at", "binding_id"),  # the data layer
    )
    batches = sa.Table(
        "binding_batches", metadata,
        sa.Column("batch_id", sa.String(40), primary_key=True),
        sa.Column("signer", sa.String(4), nullable=False),
        sa.Column("leaves", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    return bindings, batches


RECORD_COLUMNS = ("binding_id", "ehc_card_id", "empi", "ssc_card_no", "region", "state",
                  "version", "at")


def record_of(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in RECORD_COLUMNS}


class BindingStore:
    """Both sides' copy of the bindings and of every batch signature they rest on."""

    def __init__(self, bindings: sa.Table, batches: sa.Table) -> None:
        self.bindings = bindings
        self.batches = batches

    def save_batch(self, conn, batch: SignedBatch) -> str:
        t = self.batches
        if conn.execute(t.select().where(t.c.batch_id == batch.batch_id)).first() is None:
            conn.execute(t.insert().values(batch_id=batch.batch_id, signer=batch.signer,
                                           leaves=batch.leaves, signature=batch.signature))
        return batch.batch_id

    def batch(self, conn, batch_id: str) -> SignedBatch:
        row = conn.execute(self.batches.select()
                           .where(self.batches.c.batch_id == batch_id)).one()
        return SignedBatch(row.signer, bytes(row.leaves), bytes(row.signature))

    def get(self, conn, bid: str):
        return conn.execute(self.bindings.select()
                            .where(self.bindings.c.binding_id == bid)).first()

    def active(self, conn, *, ehc_card_id: str | None = None,
               ssc_card_no: str | None = None):
        """The bound binding of a card (at most one per card on each side)."""
        t = self.bindings
        cond = (t.c.ehc_card_id == ehc_card_id) if ehc_card_id else (
            t.c.ssc_card_no == ssc_card_no)
        return conn.execute(t.select().where(cond, t.c.state == "bound")).first()

    def upsert(self, conn, record: dict[str, Any], ehc: tuple[str, int],
               essc: tuple[str | None, int | None]) -> None:
        self.upsert_many(conn, [(record, ehc, essc)])

    def upsert_many(self, conn, items: list[tuple[dict[str, Any], tuple, tuple]]) -> None:
        """Store many (record, (ehc batch, index), (essc batch, index)) in a few
        statements: bulk pages must not pay a statement per binding."""
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = [{**r, "ehc_batch": e[0], "ehc_index": e[1], "essc_batch": s[0],
                 "essc_index": s[1], "updated_at": now} for r, e, s in items]
        if not rows:
            return
        known = self.existing(conn, [r["binding_id"] for r in rows])
        fresh = [r for r in rows if r["binding_id"] not in known]
        changed = [{**r, "bid": r["binding_id"]} for r in rows if r["binding_id"] in known]
        if fresh:
            conn.execute(self.bindings.insert(), fresh)
        if changed:
            t = self.bindings
            cols = [c for c in rows[0] if c != "binding_id"]
            conn.execute(t.update().where(t.c.binding_id == sa.bindparam("bid"))
                         .values({c: sa.bindparam(c) for c in cols}), changed)

    def existing(self, conn, ids: list[str]) -> dict[str, Any]:
        """The stored rows of these binding IDs, by ID."""
        t = self.bindings
        return {r.binding_id: r for r in conn.execute(
            t.select().where(t.c.binding_id.in_(ids))).all()}

    def active_by(self, conn, column: str, values: list[str]) -> dict[str, str]:
        """{card: binding ID} of the bound bindings of these cards (``column`` is
        ``ehc_card_id`` or ``ssc_card_no``)."""
        t = self.bindings
        col = t.c[column]
        return {r[0]: r[1] for r in conn.execute(
            sa.select(col, t.c.binding_id).where(col.in_(values), t.c.state == "bound")).all()}

    def proof(self, conn, bid: str) -> dict[str, Any] | None:
        row = self.get(conn, bid)
        if row is None:
            return None
        out: dict[str, Any] = {"record": record_of(row)}
        for side in SIDES:
            batch_id, index = getattr(row, f"{side}_batch"), getattr(row, f"{side}_index")
            out[side] = None if batch_id is None else {
                "batch": self.batch(conn, batch_id).to_json(), "index": index}
        return out

    def page(self, conn, after: str, limit: int) -> list[Any]:
        t = self.bindings
        return conn.execute(t.select().where(t.c.binding_id > after)
                            .order_by(t.c.binding_id).limit(limit)).all()


def check_proof(proof: Any, keys: dict[str, str]) -> dict[str, Any]:
    """The record of a proof signed by both sides (``keys``: side -> SM2 public key);
    422 BINDING_SIGNATURE_INVALID when either signature fails."""
    if not isinstance(proof, dict):
        raise Invalid("BINDING_RECORD_INVALID", "proof must be an object")
    record = check_record(proof.get("record"))
    for side in SIDES:
        part = proof.get(side)
        if not isinstance(part, dict) or not isinstance(part.get("index"), int):
            raise Invalid("BINDING_SIGNATURE_INVALID", f"{side} signature missing")
        batch = SignedBatch.from_json(part.get("batch"))
        if batch.signer != side or not verify_proof(record, batch, part["index"], keys[side]):
            raise Invalid("BINDING_SIGNATURE_INVALID", f"{side} signature does not hold")
    return record


class BindingSide:
    """What both card systems do alike with their own copy of the bindings: serve a proof
    of one, and check a proof from anyone against both keys and the copy held here.
    Subclasses set ``side``, ``engine``, ``store``, ``public_hex`` and ``peer`` (a client
    whose ``signing_key()`` gives the other system's public key)."""

    side: str
    engine: Any
    store: BindingStore
    public_hex: str
    peer: Any
    _peer_key: str | None = None

    async def peer_key(self) -> str:
        if self._peer_key is None:
            self._peer_key = await self.peer.signing_key()
        return self._peer_key

    def keys(self, peer_key: str) -> dict[str, str]:
        other = "essc" if self.side == "ehc" else "ehc"
        return {self.side: self.public_hex, other: peer_key}

    def records(self, after: str, limit: int) -> list[dict[str, Any]]:
        """Our copy of every binding, by binding ID after a cursor (reconciliation)."""
        with self.engine.connect() as conn:
            return [record_of(r) for r in self.store.page(conn, after, limit)]

    def proof(self, bid: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            proof = self.store.proof(conn, bid)
        if proof is None:
            raise NotFound("BINDING_NOT_FOUND", "no such binding")
        return proof

    async def check_proof(self, proof: Any) -> dict[str, Any]:
        """A proof from anyone: both signatures hold, and whether it is our own copy."""
        record = check_proof(proof, self.keys(await self.peer_key()))
        with self.engine.connect() as conn:
            row = self.store.get(conn, record["binding_id"])
        return {"valid": True, "record": record,
                "matches_ours": row is not None and record_of(row) == record}
