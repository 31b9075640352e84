"""The EHC side of two-card fusion: it coordinates binding with the e-SSC system (sign,
send, countersign, store), repairs what a failure left (reconciliation), opens and binds
cards for every e-SSC holder (auto-opening), and pulls the e-SSC side's usage records.

A binding is first stored here as *pending* with our signature, then sent; only the
e-SSC side's countersignature makes it complete on our side. A refusal removes the
pending row (nothing stored on either side); silence leaves it pending, and
``reconcile`` finishes it later. A pending binding is never used by a fused code."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, delete, select

from ..common.cards import binding as b
from ..common.cards.feeds import UsageInbox
from ..common.errors import Conflict, NotFound, PeerFailed, ServiceError
from ..common.peer import PeerUnavailable
from .cards import STATE_ERRORS, USABLE_STATES, CardService, refuse_unusable
from .peers import RegistryClient, SocialcardClient
from .tables import binding_batches, binding_pending, bindings, shared_usage, sync_cursors


@dataclass(frozen=True)
class BindRequest:
    ehc_card_id: str
    empi: str
    ssc_card_no: str
    region: str
    state: str  # bound | unbound
    identity: dict[str, str] | None  # the EHC holder's ID, for the e-SSC side's check


@dataclass
class Outcome:
    binding_id: str
    status: str  # complete | pending | refused
    code: str = ""
    message: str = ""
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReconcileReport:
    completed: int = 0
    dropped: int = 0
    still_pending: int = 0
    resent: int = 0
    adopted: int = 0
    conflicts: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.completed or self.dropped or self.still_pending or self.resent
                    or self.adopted or self.conflicts)


REALNAME_REASONS = {"invalid": "INVALID_ID_NUMBER", "no_match": "REALNAME_MISMATCH",
                    "unknown": "REALNAME_UNVERIFIED"}

class Fusion(b.BindingSide):
    side = "ehc"

    def __init__(self, engine: Engine, cards: CardService, social: SocialcardClient,
                 key: tuple[str, str], peer_timeout_s: float,
                 registry: RegistryClient | None = None) -> None:
        self.engine = engine
        self.cards = cards
        self.registry = registry
        self.social = self.peer = social
        self.private_hex, self.public_hex = key
        self.store = b.BindingStore(bindings, binding_batches)
        self.peer_timeout_s = peer_timeout_s
        self.inbox = UsageInbox(engine, shared_usage, sync_cursors, "essc")

    def active_binding(self, card_id: str) -> Any:
        with self.engine.connect() as conn:
            row = self.store.active(conn, ehc_card_id=card_id)
        if row is None:
            raise NotFound("BINDING_NOT_FOUND", "this card is not bound to an e-SSC")
        return row

    # ------------------------------------------------------------------ bind / unbind
    async def bind(self, card: Any, ssc_card_no: str, region: str) -> Outcome:
        refuse_unusable(card.state)
        with self.engine.connect() as conn:
            active = self.store.active(conn, ehc_card_id=card.card_id)
        if active is not None:
            if active.ssc_card_no == ssc_card_no:
                return Outcome(active.binding_id, "complete", record=b.record_of(active))
            raise Conflict("BINDING_EXISTS", "this card is bound to another e-SSC; "
                           "unbind it first")
        req = BindRequest(card.card_id, card.empi, ssc_card_no, region, "bound",
                          self._holder(card))
        return (await self.submit([req]))[0]

    async def unbind(self, card: Any) -> Outcome:
        with self.engine.connect() as conn:
            active = self.store.active(conn, ehc_card_id=card.card_id)
        if active is None:
            raise NotFound("BINDING_NOT_FOUND", "this card is not bound")
        req = BindRequest(card.card_id, card.empi, active.ssc_card_no, active.region,
                          "unbound", None)
        return (await self.submit([req]))[0]

    def _records(self, conn, reqs: list[BindRequest]) -> list[dict[str, Any]]:
        """A new version per request, or the pending one already sent for it."""
        ids = [b.binding_id(r.ehc_card_id, r.ssc_card_no) for r in reqs]
        pending = {p.binding_id: orjson.loads(p.record) for p in conn.execute(
            select(binding_pending).where(binding_pending.c.binding_id.in_(ids))).all()}
        stored = self.store.existing(conn, ids)
        out = []
        for bid, r in zip(ids, reqs, strict=True):
            pend, row = pending.get(bid), stored.get(bid)
            if pend is not None and pend["state"] == r.state:
                out.append(pend)
                continue
            version = max(row.version if row else 0, pend["version"] if pend else 0) + 1
            out.append(b.make_record(r.ehc_card_id, r.empi, r.ssc_card_no, r.region,
                                     r.state, version))
        return out

    async def submit(self, reqs: list[BindRequest]) -> list[Outcome]:
        """Sign, store pending, send, and complete what the e-SSC side countersigns."""
        peer_key = await self.peer_key()
        with self.engine.begin() as conn:
            records = self._records(conn, reqs)
            batch = b.sign_batch("ehc", self.private_hex, records)
            self.store.save_batch(conn, batch)
            now = datetime.now(UTC).replace(tzinfo=None)
            ids = [r["binding_id"] for r in records]
            conn.execute(delete(binding_pending).where(binding_pending.c.binding_id.in_(ids)))
            conn.execute(binding_pending.insert(), [
                {"binding_id": r["binding_id"], "record": b.canonical(r).decode(),
                 "ehc_batch": batch.batch_id, "ehc_index": i, "created_at": now}
                for i, r in enumerate(records)])
        payload = {"records": records, "ehc": batch.to_json(),
                   "identities": [r.identity for r in reqs]}
        try:
            answer = await self.social.submit_bindings(payload)
        except PeerUnavailable as exc:
            return [Outcome(r["binding_id"], "pending", exc.code, exc.message, r)
                    for r in records]
        return self._complete(records, batch, answer, peer_key)

    def _complete(self, records: list[dict[str, Any]], batch: b.SignedBatch,
                  answer: dict[str, Any], peer_key: str) -> list[Outcome]:
        their = {bid: b.SignedBatch.from_json(j) for bid, j in answer["batches"].items()}
        if not all(sb.signer == "essc" and sb.verify(peer_key) for sb in their.values()):
            raise PeerFailed("PEER_SIGNATURE_INVALID",
                           "the e-SSC side's countersignature does not hold")
        outcomes, done = [], []
        for i, (record, res) in enumerate(zip(records, answer["results"], strict=True)):
            bid = record["binding_id"]
            if not res["ok"]:
                outcomes.append(Outcome(bid, "refused", res["code"], res["message"], record))
                continue
            sb = their[res["batch_id"]]
            if not b.holds(sb, res["index"], record):  # its signature checked above
                raise PeerFailed("PEER_SIGNATURE_INVALID",
                               "countersigned batch does not hold this record")
            done.append((record, (batch.batch_id, i), (sb.batch_id, res["index"])))
            outcomes.append(Outcome(bid, "complete", record=record))
        with self.engine.begin() as conn:
            for sb in their.values():
                self.store.save_batch(conn, sb)
            self.store.upsert_many(conn, done)
            conn.execute(delete(binding_pending).where(
                binding_pending.c.binding_id.in_([r["binding_id"] for r in records])))
        return outcomes

    # ------------------------------------------------------------------ reconciliation
    async def reconcile(self) -> ReconcileReport:
        """Finish pending bindings, then compare both sides' copies and repair."""
        report = ReconcileReport()
        with self.engine.connect() as conn:
            pending = [orjson.loads(p.record) for p in conn.execute(
                select(binding_pending).order_by(binding_pending.c.binding_id)).all()]
        for start in range(0, len(pending), 1000):
            chunk = pending[start:start + 1000]
            reqs = [BindRequest(r["ehc_card_id"], r["empi"], r["ssc_card_no"], r["region"],
                                r["state"], self._identity(r)) for r in chunk]
            for record, out in zip(chunk, await self.submit(reqs), strict=True):
                kind = {"complete": "completed", "refused": "dropped",
                        "pending": "still_pending"}[out.status]
                setattr(report, kind, getattr(report, kind) + 1)
                report.actions.append(f"{kind} pending {record['state']} {out.binding_id}"
                                      + (f" ({out.code})" if out.code else ""))
        await self._compare(report)
        return report

    async def _compare(self, report: ReconcileReport) -> None:
        peer_key = await self.peer_key()
        ours = self._all_ours()
        theirs: dict[str, dict[str, Any]] = {}
        after = ""
        while True:
            page = await self.social.bindings(after, 1000)
            theirs.update({r["binding_id"]: r for r in page})
            if len(page) < 1000:
                break
            after = page[-1]["binding_id"]
        for bid in sorted(set(ours) | set(theirs)):
            mine, other = ours.get(bid), theirs.get(bid)
            if mine == other:
                continue
            if other is None or (mine is not None and mine["version"] > other["version"]):
                await self._resend(bid, report)
            elif mine is None or other["version"] > mine["version"]:
                proof = await self.social.proof(bid)
                record = b.check_proof(proof, self.keys(peer_key))
                with self.engine.begin() as conn:
                    for side in b.SIDES:
                        self.store.save_batch(conn, b.SignedBatch.from_json(
                            proof[side]["batch"]))
                    ehc_id = b.SignedBatch.from_json(proof["ehc"]["batch"]).batch_id
                    essc_id = b.SignedBatch.from_json(proof["essc"]["batch"]).batch_id
                    self.store.upsert(conn, record, (ehc_id, proof["ehc"]["index"]),
                                      (essc_id, proof["essc"]["index"]))
                report.adopted += 1
                report.actions.append(f"adopted e-SSC side's version {record['version']} "
                                      f"of {bid}")
            else:
                report.conflicts.append(bid)
                report.actions.append(f"CONFLICT {bid}: same version, different records")

    def _identity(self, record: dict[str, Any]) -> dict[str, str] | None:
        """The EHC holder's identity the e-SSC side checks a bound record against."""
        if record["state"] == "unbound":
            return None
        return self._holder(self.cards.card(record["ehc_card_id"]))

    def _holder(self, card: Any) -> dict[str, str]:
        """The card holder's ID, which the e-SSC side checks its own holder against."""
        return {"id_type": card.id_type,
                "id_number": self.cards.cipher.decrypt(card.id_number_enc)}

    def _all_ours(self) -> dict[str, dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(bindings)).all()
        return {r.binding_id: b.record_of(r) for r in rows}

    async def _resend(self, bid: str, report: ReconcileReport) -> None:
        """Send our complete version (with its stored signature) to a side that lacks it."""
        with self.engine.connect() as conn:
            row = self.store.get(conn, bid)
            batch = self.store.batch(conn, row.ehc_batch)
        record = b.record_of(row)
        answer = await self.social.submit_bindings({
            "records": [record], "ehc": batch.to_json(),
            "identities": [self._identity(record)]})
        res = answer["results"][0]
        report.resent += 1
        report.actions.append(f"resent version {record['version']} of {bid}: "
                              + ("accepted" if res["ok"] else res["code"]))

    # ------------------------------------------------------------------ usage records
    async def pull_usage(self) -> int:
        return await self.inbox.pull(self.social.usage_records)

    # ------------------------------------------------------------------ auto-opening
    async def fuse_page(self, after: str, limit: int,
                        before: str | None = None) -> dict[str, Any]:
        """Open (or find) an EHC for each unbound e-SSC holder after ``after`` and bind
        them in one signed batch. Re-running is harmless: holders already bound are no
        longer listed, and a pending binding is re-sent with its first record."""
        holders = await self.social.holders(after, limit, before)
        if not holders:
            return {"holders": 0, "opened": 0, "bound": 0, "refused": 0, "pending": 0,
                    "refusals": [], "next_after": None}
        refusals: list[dict[str, str]] = []
        fit = await self._real_named(holders, refusals)
        opened, rows = self.cards.apply_many(fit, issuer="fusion") if fit else (0, [])
        reqs = []
        for h, row in zip(fit, rows, strict=True):
            if row.state in USABLE_STATES:
                reqs.append(BindRequest(row.card_id, row.empi, h["ssc_card_no"], h["region"],
                                        "bound", {"id_type": h["id_type"],
                                                  "id_number": h["id_number"]}))
            else:  # the EHC is lost or cancelled: the holder must act first
                refusals.append({"ssc_card_no": h["ssc_card_no"],
                                 "reason": STATE_ERRORS.get(row.state, (None, "CARD_UNUSABLE"))[1]})
        outcomes = await self.submit(reqs) if reqs else []
        for req, o in zip(reqs, outcomes, strict=True):
            if o.status == "refused":
                refusals.append({"ssc_card_no": req.ssc_card_no,
                                 "reason": o.code or "BINDING_REFUSED"})
        count = {s: sum(o.status == s for o in outcomes) for s in ("complete", "pending")}
        return {"holders": len(holders), "opened": opened, "bound": count["complete"],
                "refused": len(refusals), "pending": count["pending"], "refusals": refusals,
                "next_after": holders[-1]["ssc_card_no"]}

    async def _real_named(self, holders: list[dict[str, Any]],
                          refusals: list[dict[str, str]]) -> list[dict[str, Any]]:
        """The holders whose identity the registry confirms; each other one refused on
        its own with its reason (a malformed ID number, a name the registry disagrees
        with), so one bad record never stops the page."""
        if self.registry is None:
            return holders
        results = await self.registry.realname_checks(holders)
        fit = []
        for h, result in zip(holders, results, strict=True):
            if result == "match":
                fit.append(h)
            else:
                refusals.append({"ssc_card_no": h["ssc_card_no"],
                                 "reason": REALNAME_REASONS.get(result, "REALNAME_MISMATCH")})
        return fit

    # ------------------------------------------------------------------ fused verification
    async def insurance_identity(self, binding: tuple[str, str],
                                 institution_code: str) -> dict[str, Any]:
        """The e-SSC identity for a fused verification, within the peer timeout; when
        the e-SSC side is slow or down, what we hold ourselves, marked partial."""
        ssc_card_no, region = binding
        try:
            async with asyncio.timeout(self.peer_timeout_s):  # no task of its own
                essc = await self.social.insurance_identity(
                    ssc_card_no, institution_code, self.peer_timeout_s)
            return {"essc": essc, "partial": False}
        except (TimeoutError, PeerUnavailable) as exc:
            reason = "SOCIALCARD_UNAVAILABLE" if isinstance(exc, PeerUnavailable) else (
                "SOCIALCARD_TIMEOUT")
        except ServiceError as exc:
            reason = exc.code
        return {"essc": {"ssc_card_no": ssc_card_no, "region": region}, "partial": True,
                "partial_reason": reason}

