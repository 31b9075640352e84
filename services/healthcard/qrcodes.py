"""QR code texts of the national EHC format, and the hardened dynamic code.

- static     ``<EHC_ID>:1``
- dynamic    national: ``<EHC_ID>:0:<SM4(protection key, expiry as hex digits, 0-padded)>``
             hardened: ``<EHC_ID>:0:<kv 2 hex><block 32 hex><tag 32 hex>`` where
             block = SM4(protection key, expiry BCD (7) || nonce (8) || 0x01) and
             tag = HMAC-SM3(mac key, EHC_ID || block)[:16]: the tag binds card, expiry and
             nonce, so a block copied behind another card's ID fails.
- temporary  ``<random 64 hex>:9``

Expiry times are China Standard Time ``YYYYMMDDHHMMSS``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..common.crypto import (
    constant_time_equal,
    hmac_sm3,
    sm4_ecb_decrypt,
    sm4_ecb_decrypt_fast,
    sm4_ecb_encrypt,
)
from .keystore import Key

CST = timezone(timedelta(hours=8), "CST")
_QR_RE = re.compile(r"^([0-9A-F]{64}):(?:(1)|(9)|0:([0-9A-F]{32}|[0-9A-F]{66}))$")


class CodeError(Exception):
    """A code refused before any database access; ``code`` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ParsedCode:
    card_id: str
    kind: str  # static | dynamic | temporary
    block: str = ""  # the validity / protected part of a dynamic code


def parse(text: str) -> ParsedCode:
    if not isinstance(text, str) or len(text) > 200:
        raise CodeError("QR_MALFORMED", "QR text has the wrong length")
    m = _QR_RE.match(text)
    if m is None:
        raise CodeError("QR_MALFORMED", "QR text is not an EHC code")
    card_id, static, temp, block = m.groups()
    if static:
        return ParsedCode(card_id, "static")
    if temp:
        return ParsedCode(card_id, "temporary")
    return ParsedCode(card_id, "dynamic", block)


def static_code(card_id: str) -> str:
    return f"{card_id}:1"


def temporary_code(temp_id: str) -> str:
    return f"{temp_id}:9"


def new_temporary_id() -> str:
    return secrets.token_hex(32).upper()


def _expiry_text(expiry: datetime) -> str:
    return expiry.astimezone(CST).strftime("%Y%m%d%H%M%S")


def read_cst_time(digits: str) -> datetime | None:
    """``YYYYMMDDHHMMSS`` (China Standard Time) or None; sliced by hand, strptime is slow."""
    if len(digits) != 14 or not digits.isdigit():
        return None
    try:
        return datetime(int(digits[:4]), int(digits[4:6]), int(digits[6:8]), int(digits[8:10]),
                        int(digits[10:12]), int(digits[12:14]), tzinfo=CST)
    except ValueError:
        return None


def national_dynamic_code(card_id: str, key: Key, expiry: datetime) -> str:
    plain = bytes.fromhex(_expiry_text(expiry)).ljust(16, b"\0")
    return f"{card_id}:0:{sm4_ecb_encrypt(key.material, plain).hex().upper()}"


def hardened_dynamic_code(card_id: str, key: Key, expiry: datetime) -> str:
    plain = bytes.fromhex(_expiry_text(expiry)) + secrets.token_bytes(8) + b"\x01"
    block = sm4_ecb_encrypt(key.material, plain)
    tag = hmac_sm3(key.mac_key, card_id.encode() + block)[:16]
    return f"{card_id}:0:{key.version:02X}{block.hex().upper()}{tag.hex().upper()}"


def national_expiry(block: str, keys: list[Key]) -> datetime:
    """Expiry inside a national validity block, trying each usable key."""
    if len(block) != 32:
        raise CodeError("QR_FORMAT_NOT_ACCEPTED", "national dynamic codes are not accepted")
    raw = bytes.fromhex(block)
    for key in keys:
        plain = sm4_ecb_decrypt(key.material, raw)
        if plain[7:] == bytes(9):
            expiry = read_cst_time(plain[:7].hex())
            if expiry is not None:
                return expiry
    raise CodeError("QR_TAMPERED", "validity block does not decrypt under any key")


def hardened_expiry(card_id: str, block: str, key_for_version) -> datetime:  # type: ignore[no-untyped-def]
    """Check the tag in constant time, then read the expiry."""
    if len(block) != 66:
        raise CodeError("QR_FORMAT_NOT_ACCEPTED", "only hardened dynamic codes are accepted")
    key = key_for_version(int(block[:2], 16))
    raw_block, tag = bytes.fromhex(block[2:34]), bytes.fromhex(block[34:])
    if key is None:
        raise CodeError("QR_TAMPERED", "code made under an unknown or retired key")
    expected = hmac_sm3(key.mac_key, card_id.encode() + raw_block)[:16]
    if not constant_time_equal(expected, tag):
        raise CodeError("QR_TAMPERED", "protected block does not match this card")
    plain = sm4_ecb_decrypt_fast(key.material, raw_block)
    expiry = read_cst_time(plain[:7].hex())
    if expiry is None or plain[15] != 1:
        raise CodeError("QR_TAMPERED", "protected block is not well formed")
    return expiry


def check_expiry(expiry: datetime, now: datetime, validity_s: int, skew_s: int) -> None:
    if now > expiry + timedelta(seconds=skew_s):
        raise CodeError("QR_EXPIRED", "dynamic code has expired")
    if expiry > now + timedelta(seconds=validity_s + skew_s):
        raise CodeError("QR_TAMPERED", "expiry lies further ahead than any issued code")
