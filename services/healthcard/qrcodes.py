"""QR code texts of the national EHC format, and the hardened dynamic code.

- static     ``<EHC_ID>:1``
- dynamic    national: ``<EHC_ID>:0:<SM4(protection key, expiry as hex digits, 0-padded)>``
             hardened: ``<EHC_ID>:0:<kv 2 hex><block 32 hex><tag 32 hex>`` where
             block = SM4(protection key, expiry BCD (7) || nonce (8) || 0x01) and
             tag = HMAC-SM3(mac key, EHC_ID || block)[:16]: the tag binds card, expiry and
             nonce, so a block copied behind another card's ID fails.
- temporary  ``<random 64 hex>:9``
- fused      ``<EHC_ID>:2:<kv><block><tag>`` [ours]: the hardened dynamic code of a card
             bound to an e-SSC, whose tag also covers the word "fused" (a plain dynamic
             code cannot be turned into a fused one); verification answers both identities

Expiry times are China Standard Time ``YYYYMMDDHHMMSS``.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..common.crypto import (
    constant_time_equal,
    hmac_sm3,
    sm4_ecb_decrypt,
    sm4_ecb_decrypt_fast,
    sm4_ecb_encrypt_fast,
)
from ..common.cst import CST, read_cst_time
from ..common.cst import digits as cst_digits
from .keystore import Key

__all__ = ["CST", "read_cst_time"]

_QR_RE = re.compile(
    r"([0-9A-F]{64}):(?:(1)|(9)|0:([0-9A-F]{32}|[0-9A-F]{66})|2:([0-9A-F]{66}))")
FUSED_MARK = b"fused:"


class CodeError(Exception):
    """A code refused before any database access; ``code`` is the API error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ParsedCode:
    card_id: str
    kind: str  # static | dynamic | temporary | fused
    block: str = ""  # the validity / protected part of a dynamic code


def parse(text: str) -> ParsedCode:
    if not isinstance(text, str) or len(text) > 200:
        raise CodeError("QR_MALFORMED", "QR text has the wrong length")
    m = _QR_RE.fullmatch(text)
    if m is None:
        raise CodeError("QR_MALFORMED", "QR text is not an EHC code")
    card_id, static, temp, block, fused = m.groups()
    if static:
        return ParsedCode(card_id, "static")
    if temp:
        return ParsedCode(card_id, "temporary")
    if fused:
        return ParsedCode(card_id, "fused", fused)
    return ParsedCode(card_id, "dynamic", block)


def static_code(card_id: str) -> str:
    return f"{card_id}:1"


def temporary_code(temp_id: str) -> str:
    return f"{temp_id}:9"


def new_temporary_id() -> str:
    return secrets.token_hex(32).upper()


def _expiry_text(expiry: datetime) -> str:
    return cst_digits(expiry.astimezone(CST))


def national_dynamic_code(card_id: str, key: Key, expiry: datetime) -> str:
    plain = bytes.fromhex(_expiry_text(expiry)).ljust(16, b"\0")
    return f"{card_id}:0:{sm4_ecb_encrypt_fast(key.material, plain).hex().upper()}"


def hardened_dynamic_code(card_id: str, key: Key, expiry: datetime,
                          fused: bool = False) -> str:
    plain = bytes.fromhex(_expiry_text(expiry)) + secrets.token_bytes(8) + b"\x01"
    block = sm4_ecb_encrypt_fast(key.material, plain)
    mark = FUSED_MARK if fused else b""
    tag = hmac_sm3(key.mac_key, mark + card_id.encode() + block)[:16]
    kind = "2" if fused else "0"
    return f"{card_id}:{kind}:{key.version:02X}{block.hex().upper()}{tag.hex().upper()}"


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


def hardened_expiry(card_id: str, block: str, key_for_version,
                    fused: bool = False) -> datetime:
    """Check the tag in constant time, then read the expiry."""
    if len(block) != 66:
        raise CodeError("QR_FORMAT_NOT_ACCEPTED", "only hardened dynamic codes are accepted")
    key = key_for_version(int(block[:2], 16))
    raw_block, tag = bytes.fromhex(block[2:34]), bytes.fromhex(block[34:])
    if key is None:
        raise CodeError("QR_TAMPERED", "code made under an unknown or retired key")
    mark = FUSED_MARK if fused else b""
    expected = hmac_sm3(key.mac_key, mark + card_id.encode() + raw_block)[:16]
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
