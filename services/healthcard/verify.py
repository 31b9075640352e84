"""The hot path: online verification of a scanned code by an institution's terminal.

Everything that need not happen per request is done once: keys are in memory, statements
are prepared text, the body is checked by hand rather than through a pydantic model. The
replay counter and the usage record are written in the transaction that reads the card
state, so a refused request writes nothing and an accepted one writes exactly one record.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Date, DateTime, Engine, bindparam, text

from ..common.errors import ApiError
from ..common.pii import FieldCipher
from ..common.settings import Settings
from . import qrcodes
from .callers import Terminal
from .cards import refuse_unusable
from .keystore import KeyStore

TERMINAL_TYPES = frozenset((1, 2, 99))
STEPS = frozenset((0, 10101, 10102, 10103, 10104, 10105, 10106, 10107))

_SELECT_CARD = text(
    "SELECT card_id, empi, id_type, id_number_enc, name_enc, sex, birth_date, state, "
    "temporary, linked_card_id FROM cards WHERE card_id = :card_id"
).columns(birth_date=Date)
_COUNT_USE = text(
    "INSERT INTO code_uses (code_digest, card_id, uses, expires_at) "
    "VALUES (:digest, :card_id, 1, :expires_at) "
    "ON CONFLICT (code_digest) DO UPDATE SET uses = code_uses.uses + 1 "
    "WHERE code_uses.uses < :limit RETURNING uses"
).bindparams(bindparam("expires_at", type_=DateTime))
_INSERT_USAGE = text(
    "INSERT INTO usage_records (card_id, empi, institution_code, terminal_id, city_code, "
    "terminal_type, step, code_kind, terminal_time, verified_at, request_id) VALUES "
    "(:card_id, :empi, :institution_code, :terminal_id, :city_code, :terminal_type, :step, "
    ":code_kind, :terminal_time, :verified_at, :request_id) RETURNING id"
).bindparams(bindparam("verified_at", type_=DateTime))


def _field(body: dict, name: str, kind: type, max_len: int = 64) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ApiError(422, "INVALID_REQUEST", f"{name}: required {kind.__name__}")
    if kind is str and not (0 < len(value) <= max_len):
        raise ApiError(422, "INVALID_REQUEST", f"{name}: 1 to {max_len} characters")
    return value


def parse_terminal_time(value: str) -> datetime:
    if len(value) != 14 or not value.isdigit():
        raise ApiError(422, "INVALID_REQUEST", "time: YYYYMMDDHHMMSS (China Standard Time)")
    try:
        return datetime.strptime(value, "%Y%m%d%H%M%S").replace(tzinfo=qrcodes.CST)
    except ValueError as exc:
        raise ApiError(422, "INVALID_REQUEST", "time: not a valid date and time") from exc


class Verifier:
    def __init__(self, engine: Engine, keystore: KeyStore, cipher: FieldCipher,
                 settings: Settings) -> None:
        self.engine = engine
        self.keystore = keystore
        self.cipher = cipher
        self.settings = settings
        self.limit = settings.max_verifications_per_code

    def _expiry(self, code: qrcodes.ParsedCode) -> datetime:
        if self.settings.qr_format == "hardened":
            return qrcodes.hardened_expiry(
                code.card_id, code.block, lambda v: self.keystore.by_version("protection", v))
        return qrcodes.national_expiry(code.block, self.keystore.usable("protection"))

    def verify(self, term: Terminal, body: Any, request_id: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(422, "INVALID_REQUEST", "body must be a JSON object")
        qr_text = _field(body, "qr_text", str, 200)
        terminal_id = _field(body, "terminal_id", str, 16)
        institution_code = _field(body, "institution_code", str, 12)
        _field(body, "institution_name", str, 128)
        city_code = _field(body, "city_code", str, 6)
        terminal_type = _field(body, "terminal_type", int)
        step = _field(body, "step", int)
        terminal_time = _field(body, "time", str, 14)
        if terminal_type not in TERMINAL_TYPES:
            raise ApiError(422, "INVALID_REQUEST", "terminal_type: 1, 2 or 99")
        if step not in STEPS:
            raise ApiError(422, "INVALID_REQUEST", "step: 0 or 10101..10107")
        if terminal_id != term.terminal_id or institution_code != term.institution_code:
            raise ApiError(403, "TERMINAL_MISMATCH",
                           "terminal_id / institution_code differ from the signing terminal")
        now = datetime.now(qrcodes.CST)
        skew = self.settings.clock_skew_s
        if abs(parse_terminal_time(terminal_time) - now) > timedelta(seconds=skew):
            raise ApiError(400, "CLOCK_SKEW", f"terminal clock is off by more than {skew}s")

        try:
            code = qrcodes.parse(qr_text)
            expiry = None
            if code.kind == "dynamic":
                expiry = self._expiry(code)
                qrcodes.check_expiry(expiry, now, self.settings.dynamic_code_validity_s, skew)
        except qrcodes.CodeError as exc:
            status = 410 if exc.code == "QR_EXPIRED" else 422
            raise ApiError(status, exc.code, exc.message) from exc

        with self.engine.begin() as conn:
            card = conn.execute(_SELECT_CARD, {"card_id": code.card_id}).first()
            if card is None or (code.kind == "temporary") != bool(card.temporary):
                raise ApiError(404, "CARD_NOT_FOUND", "no card with this ID")
            refuse_unusable(card.state)
            if expiry is not None and self.limit:
                counted = conn.execute(_COUNT_USE, {
                    "digest": hashlib.new("sm3", qr_text.encode()).hexdigest(),
                    "card_id": code.card_id,
                    "expires_at": expiry.astimezone(UTC).replace(tzinfo=None),
                    "limit": self.limit,
                }).first()
                if counted is None:
                    raise ApiError(409, "QR_REPLAYED",
                                   f"code already verified {self.limit} time(s)")
            verified_at = now.astimezone(UTC).replace(tzinfo=None)
            record_id = conn.execute(_INSERT_USAGE, {
                "card_id": card.card_id, "empi": card.empi,
                "institution_code": term.institution_code, "terminal_id": term.terminal_id,
                "city_code": city_code, "terminal_type": terminal_type, "step": step,
                "code_kind": code.kind, "terminal_time": terminal_time,
                "verified_at": verified_at, "request_id": request_id,
            }).scalar_one()

        name = self.cipher.decrypt(card.name_enc) if card.name_enc else None
        return {
            "card_id": card.card_id,
            "empi": card.empi,
            "name": name,
            "sex": card.sex,
            "birth_date": card.birth_date.isoformat() if card.birth_date else None,
            "id_type": card.id_type,
            "id_number": self.cipher.decrypt(card.id_number_enc) or None,
            "card_state": card.state,
            "code_kind": code.kind,
            "temporary": bool(card.temporary),
            "linked_card_id": card.linked_card_id,
            "usage_record_id": record_id,
            "verified_at": now.strftime("%Y%m%d%H%M%S"),
        }
