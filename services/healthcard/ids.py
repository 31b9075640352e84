"""National EHC identifiers: EMPI and the card ID derived under the security key."""

from __future__ import annotations

from ..common.crypto import hmac_sm3, sm4_ecb_encrypt


def diversification_factor(empi: str) -> bytes:
    """XOR of the four 8-byte groups of the 32-byte EMPI."""
    raw = bytes.fromhex(empi)
    if len(raw) != 32:
        raise ValueError("EMPI must be 64 hex characters")
    out = bytearray(8)
    for i in range(0, 32, 8):
        for j in range(8):
            out[j] ^= raw[i + j]
    return bytes(out)


def derive_card_id(security_key: bytes, empi: str, id_type: str, id_number: str) -> str:
    """EHC ID: SM4-ECB(K, pad0(id_type||id_number)) with K = SM4-ECB(key, F||NOT F).

    The zero padding reaches a multiple of 16 bytes and at least 32 [ours: the national
    text pads to a multiple of 16 only; a resident ID (20 bytes) gives 32 either way, and
    the minimum keeps a shorter document's card ID (a newborn's birth certificate, 12
    bytes) at the 64 hex characters every code format expects]."""
    factor = diversification_factor(empi)
    user_key = sm4_ecb_encrypt(security_key, factor + bytes(b ^ 0xFF for b in factor))
    plain = (id_type + id_number).encode("ascii")
    plain += b"\0" * (max(32, len(plain) + (-len(plain) % 16)) - len(plain))
    return sm4_ecb_encrypt(user_key, plain).hex().upper()


def make_empi(salt: bytes, id_type: str, id_number: str) -> str:
    """A stable 32-byte master patient index: keyed SM3 of the identity (upper-case hex)."""
    return hmac_sm3(salt, f"empi:{id_type}:{id_number}".encode()).hex().upper()
