"""The e-SSC side of two-card fusion: it checks and countersigns bindings the EHC system
proposes (and keeps its own copy with both signatures), lists holders to auto-open,
answers insurance identities for fused verifications, and pulls the EHC side's usage
records of bound cards."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Engine, select

from ..common.cards import binding as b
from ..common.cards.feeds import UsageInbox
from ..common.errors import Invalid
from ..common.fastpath import InlineFirst
from .cards import NORMAL, STATE_ERRORS, SocialCards
from .peers import HealthcardClient
from .tables import binding_batches, bindings, insured, shared_usage, sync_cursors


class Refusal(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Known:
    """What a page of records needs from the store, read in four statements."""

    bindings: dict[str, Any]
    cards: dict[str, Any]
    active_ssc: dict[str, str]
    active_ehc: dict[str, str]

    @classmethod
    def load(cls, conn, store: b.BindingStore, records: list[dict[str, Any]]) -> _Known:
        ssc = [r["ssc_card_no"] for r in records]
        return cls(
            store.existing(conn, [r["binding_id"] for r in records]),
            {r.ssc_card_no: r for r in conn.execute(
                select(insured).where(insured.c.ssc_card_no.in_(ssc))).all()},
            store.active_by(conn, "ssc_card_no", ssc),
            store.active_by(conn, "ehc_card_id", [r["ehc_card_id"] for r in records]))

    def accept(self, record: dict[str, Any]) -> None:
        """Later records of the same page see this one."""
        bid, ssc, ehc = record["binding_id"], record["ssc_card_no"], record["ehc_card_id"]
        if record["state"] == "bound":
            self.active_ssc[ssc], self.active_ehc[ehc] = bid, bid
        else:
            self.active_ssc.pop(ssc, None)
            self.active_ehc.pop(ehc, None)


class SocialFusion(b.BindingSide):
    side = "essc"

    def __init__(self, engine: Engine, cards: SocialCards, ehc: HealthcardClient,
                 key: tuple[str, str]) -> None:
        self.engine = engine
        self.cards = cards
        self.ehc = self.peer = ehc
        self.private_hex, self.public_hex = key
        self.store = b.BindingStore(bindings, binding_batches)
        self.inbox = UsageInbox(engine, shared_usage, sync_cursors, "ehc")
        self.identity_now = cards.bound_identity_pg if cards.pg is not None else InlineFirst(
            None if cards.hot_now is None else partial(cards.bound_identity,
                                                       hot=cards.hot_now),
            cards.bound_identity)

    # ------------------------------------------------------------------ countersigning
    async def accept(self, payload: Any) -> dict[str, Any]:
        """Check the EHC side's signed batch and each record; countersign and store the
        acceptable ones in one transaction. A forged batch stores nothing at all."""
        if not isinstance(payload, dict):
            raise Invalid("INVALID_REQUEST", "body must be an object")
        records, identities = payload.get("records"), payload.get("identities")
        if (not isinstance(records, list) or not isinstance(identities, list)
                or not 0 < len(records) <= b.MAX_BATCH or len(identities) != len(records)):
            raise Invalid("INVALID_REQUEST", "records and identities: equal lists of "
                           f"1 to {b.MAX_BATCH}")
        records = [b.check_record(r) for r in records]
        ehc = b.SignedBatch.from_json(payload.get("ehc"))
        if ehc.signer != "ehc" or not ehc.verify(await self.peer_key()):
            raise Invalid("BINDING_SIGNATURE_INVALID", "the EHC side's signature "
                           "over this batch does not hold")
        positions = {ehc.leaves[i:i + 32]: i // 32 for i in range(0, len(ehc.leaves), 32)}
        if any(b.leaf(r) not in positions for r in records):
            raise Invalid("BINDING_SIGNATURE_INVALID", "a record is not in the signed batch")
        results: list[dict[str, Any]] = []
        accepted: list[tuple[int, dict[str, Any]]] = []
        replayed: set[str] = set()
        with self.engine.begin() as conn:
            known = _Known.load(conn, self.store, records)
            for i, (record, identity) in enumerate(zip(records, identities, strict=True)):
                bid = record["binding_id"]
                try:
                    stored = self._check(record, identity, known)
                except Refusal as exc:
                    results.append({"binding_id": bid, "ok": False, "code": exc.code,
                                    "message": exc.message})
                    continue
                if stored is not None:  # this very version is here already: a retry
                    replayed.add(stored.essc_batch)
                    results.append({"binding_id": bid, "ok": True,
                                    "batch_id": stored.essc_batch, "index": stored.essc_index})
                    continue
                known.accept(record)
                accepted.append((i, record))
                results.append({"binding_id": bid, "ok": True})
            batches: dict[str, Any] = {}
            if accepted:
                ours = b.sign_batch("essc", self.private_hex, [r for _, r in accepted])
                self.store.save_batch(conn, ehc)
                self.store.save_batch(conn, ours)
                self.store.upsert_many(conn, [
                    (record, (ehc.batch_id, positions[b.leaf(record)]), (ours.batch_id, j))
                    for j, (_, record) in enumerate(accepted)])
                for j, (i, _) in enumerate(accepted):
                    results[i].update(batch_id=ours.batch_id, index=j)
                batches[ours.batch_id] = ours.to_json()
            for batch_id in replayed:
                batches[batch_id] = self.store.batch(conn, batch_id).to_json()
        return {"results": results, "batches": batches}

    def _check(self, record: dict[str, Any], identity: Any, known: _Known):
        """None when the record may be stored; the stored row when it already is; a
        Refusal otherwise."""
        current = known.bindings.get(record["binding_id"])
        if current is not None and current.version >= record["version"]:
            if current.version == record["version"] and b.record_of(current) == record:
                return current
            raise Refusal("BINDING_VERSION_STALE", "a newer version of this binding exists")
        card = known.cards.get(record["ssc_card_no"])
        if card is None:
            raise Refusal("SSC_CARD_NOT_FOUND", "no such e-SSC card")
        if record["region"] != card.region:
            raise Refusal("BINDING_REGION_MISMATCH", "region differs from the e-SSC card's")
        if record["state"] == "unbound":
            if known.active_ssc.get(record["ssc_card_no"]) != record["binding_id"]:
                raise Refusal("BINDING_NOT_FOUND", "nothing bound to unbind")
            return None
        if (not isinstance(identity, dict) or identity.get("id_type") != card.id_type
                or not isinstance(identity.get("id_number"), str)
                or self.cards.cipher.digest(identity["id_number"]) != card.id_digest):
            raise Refusal("BINDING_IDENTITY_MISMATCH",
                          "the e-SSC card belongs to someone else")
        if card.card_state != NORMAL:
            raise Refusal(*STATE_ERRORS[card.card_state][1:])
        for other in (known.active_ssc.get(record["ssc_card_no"]),
                      known.active_ehc.get(record["ehc_card_id"])):
            if other is not None and other != record["binding_id"]:
                raise Refusal("BINDING_EXISTS", "a card is bound to another card")
        return None

    # ------------------------------------------------------------------ other peer calls
    def holders(self, after: str, limit: int, before: str | None = None
                ) -> list[dict[str, Any]]:
        """Issued (normal) e-SSC holders never bound to an EHC, by card number (a holder
        who unbound by choice is not bound again by the batch)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(insured).outerjoin(bindings,
                                          bindings.c.ssc_card_no == insured.c.ssc_card_no)
                .where(insured.c.card_state == NORMAL, insured.c.ssc_card_no > after,
                       insured.c.ssc_card_no < (before or "~"),
                       bindings.c.binding_id.is_(None))
                .order_by(insured.c.ssc_card_no).limit(limit)).all()
        dec = self.cards.cipher.decrypt
        return [{"ssc_card_no": r.ssc_card_no, "region": r.region, "id_type": r.id_type,
                 "id_number": dec(r.id_number_enc), "name": dec(r.name_enc),
                 "phone": dec(r.phone_enc) if r.phone_enc else None} for r in rows]

    def insurance_identity(self, ssc_card_no: str, institution_code: str) -> dict[str, Any]:
        """The bound card's identity and a voucher, in one transaction (the hot path of a
        fused verification)."""
        return self.cards.bound_identity(ssc_card_no, institution_code)

    async def pull_usage(self) -> int:
        return await self.inbox.pull(self.ehc.usage_records)
