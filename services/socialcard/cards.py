"""Insured persons and their e-SSC cards: import from the social-security bureau, claim
by a channel app, lost / unlock / cancel, the e-SSC's own QR code and its verification,
and insurance voucher tokens (ecToken)."""

from __future__ import annotations

import re
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError

from ..common.cards.audit import append
from ..common.cards.consent import Consent
from ..common.cards.idcard import (
    ID_TYPE_RESIDENT,
    InvalidIdNumber,
    mask_id_number,
    mask_name,
    parse_resident_id,
)
from ..common.crypto import constant_time_equal, hmac_sm3
from ..common.cst import cst_day, utc_now
from ..common.db import AsyncPg, RawConnections, rows_by_identity
from ..common.errors import Conflict, Gone, Invalid, NotFound
from ..common.pii import FieldCipher
from ..common.shared_store import SlicedSweep, Swept, sweep_with
from .tables import card_apps, code_uses, grant_codes, insured, settlements
from .tables import usage_records as essc_usage

NOT_ENABLED, NORMAL, LOST, VOID, PRE_LOST, CANCELLED = 0, 1, 2, 7, 8, 9
STATE_ERRORS = {
    NOT_ENABLED: (Conflict, "SSC_CARD_NOT_ENABLED", "the e-SSC card is not enabled"),
    LOST: (Conflict, "SSC_CARD_LOST", "the e-SSC card is reported lost"),
    PRE_LOST: (Conflict, "SSC_CARD_LOST", "the e-SSC card is pre-reported lost"),
    VOID: (Conflict, "SSC_CARD_CANCELLED", "the e-SSC card is void"),
    CANCELLED: (Conflict, "SSC_CARD_CANCELLED", "the e-SSC card is cancelled"),
}
TRANSITIONS = {  # action: (allowed from, to)
    "report-lost": ((NORMAL, PRE_LOST), LOST),
    "unlock": ((LOST, PRE_LOST), NORMAL),
    "cancel": ((NOT_ENABLED, NORMAL, LOST, PRE_LOST), CANCELLED),
}
INSURANCE_TYPES = {"310": "employee basic medical insurance",
                   "390": "urban and rural resident basic medical insurance"}
CODE_RE = re.compile(r"ESSC:([0-9]{20}):([0-9]{14}):([0-9a-f]{16}):([0-9a-f]{32})")
EC_TOKEN_TTL = timedelta(minutes=30)



def refuse_unusable(state: int) -> None:
    if state != NORMAL:
        kind, code, message = STATE_ERRORS.get(
            state, (Conflict, "SSC_CARD_UNUSABLE", "not usable"))
        raise kind(code, message)


_BOUND_CARD = (  # the bound binding of an e-SSC and the card (absent: SSC_CARD_NOT_FOUND)
    "SELECT b.binding_id, i.region, i.insurance_type, i.card_state, i.name_enc "
    "FROM bindings b LEFT JOIN insured i ON i.ssc_card_no = b.ssc_card_no "
    "WHERE b.ssc_card_no = ? AND b.state = 'bound'"
)
_VOUCHER = ("INSERT INTO ec_tokens (token, ssc_card_no, institution_code, expires_at) "
            "VALUES (?, ?, ?, ?)")
# PostgreSQL: the same read and the voucher (only for a usable card) in one statement,
# atomic on its own: one round trip
_PG_BOUND_IDENTITY = """WITH card AS (SELECT b.binding_id, i.region, i.insurance_type,
    i.card_state, i.name_enc FROM bindings b LEFT JOIN insured i
    ON i.ssc_card_no = b.ssc_card_no WHERE b.ssc_card_no = %(ssc)s::text
    AND b.state = 'bound'),
  voucher AS (INSERT INTO ec_tokens (token, ssc_card_no, institution_code, expires_at)
    SELECT card.region || %(suffix)s::text, %(ssc)s::text, %(institution)s::text,
    %(expires)s::timestamp FROM card WHERE card.region IS NOT NULL
    AND card.card_state = %(usable)s::int RETURNING token)
SELECT card.binding_id, card.region, card.insurance_type, card.card_state, card.name_enc,
  (SELECT token FROM voucher) FROM card"""


def new_ec_token(region: str) -> str:
    return region + _token_suffix()


def _token_suffix() -> str:
    return secrets.token_hex(16).upper()


def _bound(row: Any) -> Any:
    """The bound card's row, else BINDING_NOT_ACTIVE (no binding) or SSC_CARD_NOT_FOUND."""
    if row is None:
        raise Conflict("BINDING_NOT_ACTIVE", "this e-SSC is not bound")
    if row[1] is None:
        raise NotFound("SSC_CARD_NOT_FOUND", "no such e-SSC card")
    return row[:5]


# the used codes past their expiry: the expiry check refuses them before their use is
# looked up (else the table grew by a row a scan); on SQLite a slice a verification's
# transaction, on PostgreSQL beside it (``shared_store.sweep_with``)
SWEPT = (Swept("code_uses", "nonce", "", "timestamp"),)


class SocialCards:
    def __init__(self, engine: Engine, cipher: FieldCipher, code_key: bytes,
                 validity_s: int, chain_key: bytes) -> None:
        self.consent = Consent(engine, card_apps, grant_codes, "ssc_card_no",
                               "SSC_CARD_NOT_FOUND")
        self.engine = engine
        self.cipher = cipher
        self.code_key = code_key
        self.validity_s = validity_s
        self.chain_key = chain_key  # the audit chains' (seals.py)
        self.hot = RawConnections(engine, pinned=False)  # called from any thread
        # SQLite: the fused hop's transaction on the loop when the lock is free
        self.hot_now = None if self.hot.postgres else RawConnections(engine, wait=False)
        # PostgreSQL: the fused hop on the async driver, one statement
        self.pg = AsyncPg(engine, autocommit=True) if self.hot.postgres else None
        self._bound_card, self._voucher = (self.hot.sql(q) for q in (_BOUND_CARD, _VOUCHER))
        self.sweep = SlicedSweep(SWEPT, postgres=self.hot.postgres)
        self.sweeping: threading.Thread | None = None  # PostgreSQL's last pass beside

    def _sweep_spent(self, conn, now: datetime) -> None:
        wall = time.time()
        if self.sweep.due(wall):
            cutoff = self.hot.timestamp(now.astimezone(UTC).replace(tzinfo=None))
            self.sweeping = sweep_with(self.engine, conn, self.sweep.steps(
                wall, {"code_uses": cutoff})) or self.sweeping

    def close(self) -> None:
        """Give back the fused hop's async connection (PostgreSQL)."""
        if self.pg is not None:
            self.pg.drop()

    # ------------------------------------------------------------------ views
    def view(self, row: Row | None, *, masked: bool = True) -> dict[str, Any]:
        assert row is not None  # callers pass a row they found or just wrote
        number = self.cipher.decrypt(row.id_number_enc)
        name = self.cipher.decrypt(row.name_enc)
        return {
            "ssc_card_no": row.ssc_card_no, "id_type": row.id_type,
            "id_number": mask_id_number(number) if masked else number,
            "name": mask_name(name) if masked else name, "region": row.region,
            "insurance_type": row.insurance_type,
            "account_balance_fen": row.account_balance_fen, "card_state": row.card_state,
        }

    def identity_of(self, row: Row, institution_code: str) -> dict[str, Any]:
        """What a hospital needs to settle: card, region, type, state and a voucher."""
        with self.hot.transaction() as cur:
            return self._identity(cur, self.hot, row.ssc_card_no, row.region,
                                  row.insurance_type, row.card_state, row.name_enc,
                                  institution_code)

    def _identity(self, cur, hot: RawConnections, ssc_card_no: str, region: str,
                  insurance_type: str, card_state: int, name_enc: str,
                  institution_code: str) -> dict[str, Any]:
        """A usable card's identity with a new voucher, written in ``cur``'s
        transaction."""
        refuse_unusable(card_state)
        token = new_ec_token(region)
        cur.execute(self._voucher, (token, ssc_card_no, institution_code,
                                    hot.timestamp(utc_now() + EC_TOKEN_TTL)))
        return self._answer(ssc_card_no, region, insurance_type, card_state, name_enc, token)

    def _answer(self, ssc_card_no: str, region: str, insurance_type: str, card_state: int,
                name_enc: str, token: str) -> dict[str, Any]:
        return {"ssc_card_no": ssc_card_no, "region": region,
                "insurance_type": insurance_type, "card_state": card_state,
                "ec_token": token, "name": mask_name(self.cipher.decrypt(name_enc))}

    async def bound_identity_pg(self, ssc_card_no: str, institution_code: str
                                ) -> dict[str, Any]:
        """``bound_identity`` on PostgreSQL: one statement on the event loop."""
        assert self.pg is not None
        row = await self.pg.first_row((_PG_BOUND_IDENTITY, {
            "ssc": ssc_card_no, "suffix": _token_suffix(), "institution": institution_code,
            "expires": utc_now() + EC_TOKEN_TTL, "usable": NORMAL}))
        _, region, insurance_type, state, name_enc = _bound(row)
        refuse_unusable(state)
        return self._answer(ssc_card_no, region, insurance_type, state, name_enc, row[5])

    def bound_identity(self, ssc_card_no: str, institution_code: str,
                       hot: RawConnections | None = None) -> dict[str, Any]:
        """A bound card's identity and a voucher, in one transaction on the raw
        connection (the hot path of a fused verification: two statements, no Core)."""
        hot = hot or self.hot
        with hot.transaction() as cur:
            cur.execute(self._bound_card, (ssc_card_no,))
            _, region, insurance_type, state, name_enc = _bound(cur.fetchone())
            return self._identity(cur, hot, ssc_card_no, region, insurance_type, state,
                                  name_enc, institution_code)

    # ------------------------------------------------------------------ import and lookup
    def import_insured(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """From the bureau: insured persons with an issued e-SSC (idempotent by identity).
        A row with a malformed resident ID number is refused on its own (its index in
        ``refused``); the others are imported."""
        refused, people = [], []
        for i, p in enumerate(batch):
            try:
                if p["id_type"] == ID_TYPE_RESIDENT:
                    p = {**p, "id_number": parse_resident_id(p["id_number"]).number}
                people.append(p)
            except InvalidIdNumber:
                refused.append({"row": i, "code": "INVALID_ID_NUMBER"})
        now = utc_now()
        digests = [self.cipher.digest(p["id_number"]) for p in people]
        keys = sorted({(p["id_type"], d) for p, d in zip(people, digests, strict=True)})
        with self.engine.begin() as conn:
            known = {(r.id_type, r.id_digest) for r in rows_by_identity(conn, insured, keys)}
            rows = []
            for p, digest in zip(people, digests, strict=True):
                if (p["id_type"], digest) in known:
                    continue
                known.add((p["id_type"], digest))
                rows.append({
                    "ssc_card_no": p["ssc_card_no"], "id_type": p["id_type"],
                    "id_digest": digest, "id_number_enc": self.cipher.encrypt(p["id_number"]),
                    "name_enc": self.cipher.encrypt(p["name"]),
                    "phone_enc": self.cipher.encrypt(p["phone"]) if p.get("phone") else None,
                    "region": p["region"], "insurance_type": p["insurance_type"],
                    "account_balance_fen": p["account_balance_fen"],
                    "card_state": p["card_state"], "created_at": now, "updated_at": now})
            try:
                if rows:
                    conn.execute(insert(insured), rows)
            except IntegrityError as exc:
                raise Conflict("SSC_CARD_EXISTS", "an e-SSC card number is taken") from exc
        return {"imported": len(rows), "known": len(people) - len(rows), "refused": refused}

    def by_card(self, conn, ssc_card_no: str) -> Row | None:
        return conn.execute(select(insured).where(insured.c.ssc_card_no == ssc_card_no)).first()

    def card(self, ssc_card_no: str) -> Row:
        with self.engine.connect() as conn:
            row = self.by_card(conn, ssc_card_no)
        if row is None:
            raise NotFound("SSC_CARD_NOT_FOUND", "no such e-SSC card")
        return row

    def owned(self, ssc_card_no: str, app_key: str, manage: bool = False) -> Row:
        """The card, if this app holds it (with ``manage`` to change it); else 404."""
        self.consent.refuse_unheld(ssc_card_no, app_key, manage)
        return self.card(ssc_card_no)

    def claim(self, id_type: str, id_number: str, name: str, app_key: str,
              strong: bool = False) -> Row | None:
        """A resident claims their e-SSC in an app that logs residents in strongly (or
        one holding it already): enabled on first claim."""
        with self.engine.begin() as conn:
            row = conn.execute(select(insured).where(
                insured.c.id_type == id_type,
                insured.c.id_digest == self.cipher.digest(id_number))).first()
            if row is None or self.cipher.decrypt(row.name_enc) != name:
                raise NotFound("NOT_INSURED", "no insured person with this identity")
            self.consent.admit(conn, row.ssc_card_no, app_key, strong, existing=True)
            if row.card_state == NOT_ENABLED:
                conn.execute(update(insured).where(insured.c.ssc_card_no == row.ssc_card_no)
                             .values(card_state=NORMAL, updated_at=utc_now()))
            return self.by_card(conn, row.ssc_card_no)

    def cancel_deceased(self, conn, id_type: str, id_number: str) -> int:
        """A death civil affairs registered: the e-SSC card is cancelled and the visits
        not yet committed (uploaded, pre-settled) are cancelled with it; a visit whose
        cash part is in flight is left to its confirmation (its money is moving), a
        settled one stays settled."""
        row = conn.execute(select(insured.c.ssc_card_no).where(
            insured.c.id_type == id_type,
            insured.c.id_digest == self.cipher.digest(id_number))).first()
        if row is None:
            return 0
        now = utc_now()
        conn.execute(update(settlements).where(
            settlements.c.ssc_card_no == row.ssc_card_no,
            settlements.c.state.in_(("uploaded", "presettled")))
            .values(state="cancelled", updated_at=now))
        return conn.execute(update(insured).where(
            insured.c.ssc_card_no == row.ssc_card_no, insured.c.card_state != CANCELLED)
            .values(card_state=CANCELLED, updated_at=now)).rowcount

    def change_state(self, ssc_card_no: str, app_key: str, action: str) -> Row | None:
        allowed, target = TRANSITIONS[action]
        self.owned(ssc_card_no, app_key, manage=True)
        with self.engine.begin() as conn:
            done = conn.execute(update(insured).where(
                insured.c.ssc_card_no == ssc_card_no, insured.c.card_state.in_(allowed))
                .values(card_state=target, updated_at=utc_now())).rowcount
            row = self.by_card(conn, ssc_card_no)
        if not done:
            state = None if row is None else row.card_state
            raise Conflict("SSC_CARD_STATE_CONFLICT",
                           f"cannot {action} an e-SSC card in state {state}")
        return row

    # ------------------------------------------------------------------ the e-SSC code
    def _tag(self, card_no: str, expiry: str, nonce: str) -> str:
        return hmac_sm3(self.code_key, f"{card_no}|{expiry}|{nonce}".encode())[:16].hex()

    def code(self, row: Row, now: datetime) -> dict[str, Any]:
        """``ESSC:<card no>:<expiry CST>:<nonce>:<tag>``, valid once, for ``validity_s``."""
        refuse_unusable(row.card_state)
        expiry = (now + timedelta(seconds=self.validity_s)).strftime("%Y%m%d%H%M%S")
        nonce = secrets.token_hex(8)
        tag = self._tag(row.ssc_card_no, expiry, nonce)
        text = f"ESSC:{row.ssc_card_no}:{expiry}:{nonce}:{tag}"
        return {"qr_text": text, "kind": "essc", "expires_at": expiry,
                "refresh_after_s": self.validity_s}

    def verify_code(self, text: str, now: datetime, institution_code: str,
                    terminal_id: str, terminal_type: int, step: int) -> dict[str, Any]:
        """Check an e-SSC code, use it up, write the usage record; the insurance identity."""
        m = CODE_RE.fullmatch(text) if isinstance(text, str) and len(text) <= 120 else None
        if m is None:
            raise Invalid("QR_MALFORMED", "not an e-SSC code")
        card_no, expiry, nonce, tag = m.groups()
        if not constant_time_equal(tag, self._tag(card_no, expiry, nonce)):
            raise Invalid("QR_TAMPERED", "e-SSC code does not check out")
        expires = datetime.strptime(expiry, "%Y%m%d%H%M%S").replace(tzinfo=now.tzinfo)
        if now > expires:
            raise Gone("QR_EXPIRED", "e-SSC code has expired")
        row = self.card(card_no)
        refuse_unusable(row.card_state)
        with self.engine.begin() as conn:
            self._sweep_spent(conn, now)
            try:
                conn.execute(insert(code_uses).values(
                    nonce=nonce, expires_at=expires.astimezone(UTC).replace(tzinfo=None)))
            except IntegrityError as exc:
                raise Conflict("QR_REPLAYED", "e-SSC code already used") from exc
            rec = append(conn, essc_usage, "usage", [{
                "ssc_card_no": card_no, "institution_code": institution_code,
                "terminal_id": terminal_id, "terminal_type": terminal_type, "step": step,
                "code_kind": "essc", "verified_at": utc_now()}], institution_code,
                cst_day(), self.chain_key)[0]
        return {**self.identity_of(row, institution_code), "usage_record_id": rec}
