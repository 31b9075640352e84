"""Personal data at rest: SM4-CBC + HMAC-SM3 per field under a key ID, and keyed SM3
digests to find a record without decrypting (blind index)."""

from __future__ import annotations

import secrets
from functools import lru_cache

from sqlalchemy import Column, String

from .crypto import constant_time_equal, hmac_sm3, sm4_cbc_decrypt, sm4_cbc_encrypt

# room for an encrypted name: a 64-character name of 4-byte characters is 613 characters
# encrypted (key ID, IV, padded ciphertext and tag in hex)
ENCRYPTED_NAME = 640


def identity_columns(*, name_digest: bool = False, name_required: bool = True) -> list[Column]:
    """A person's identity at rest: ID type, the ID number's digest (the blind index)
    and ciphertext, the name's ciphertext (and digest), the phone's ciphertext."""
    return [Column("id_type", String(2), nullable=False),
            Column("id_digest", String(64), nullable=False),
            Column("id_number_enc", String(200), nullable=False),
            *([Column("name_digest", String(64), nullable=not name_required)]
              if name_digest else []),
            Column("name_enc", String(ENCRYPTED_NAME), nullable=not name_required),
            Column("phone_enc", String(200))]


class FieldCipher:
    """Encrypts fields as ``<key id>:<iv hex>:<ciphertext hex>:<tag hex>``."""

    def __init__(self, master: bytes, key_id: str = "k1") -> None:
        self.key_id = key_id
        self._master = master
        self._keys: dict[str, tuple[bytes, bytes, bytes]] = {}

    def _derive(self, key_id: str) -> tuple[bytes, bytes, bytes]:
        if key_id not in self._keys:
            root = hmac_sm3(self._master, b"ehc-pii:" + key_id.encode())
            enc = root[:16]
            mac = hmac_sm3(root, b"mac")
            index = hmac_sm3(root, b"index")
            self._keys[key_id] = (enc, mac, index)
        return self._keys[key_id]

    def encrypt(self, value: str) -> str:
        enc, mac, _ = self._derive(self.key_id)
        iv = secrets.token_bytes(16)
        ct = sm4_cbc_encrypt(enc, iv, value.encode())
        tag = hmac_sm3(mac, self.key_id.encode() + iv + ct)[:16]
        return f"{self.key_id}:{iv.hex()}:{ct.hex()}:{tag.hex()}"

    def decrypt(self, token: str) -> str:
        return self._decrypt_cached(token)

    @lru_cache(maxsize=200_000)  # noqa: B019 - one cipher per process; a new token is a new key
    def _decrypt_cached(self, token: str) -> str:
        """Ciphertexts are immutable (a change writes a new token with a fresh IV), so a
        cache keyed by the token can never answer stale data."""
        key_id, iv_hex, ct_hex, tag_hex = token.split(":")
        enc, mac, _ = self._derive(key_id)
        iv, ct = bytes.fromhex(iv_hex), bytes.fromhex(ct_hex)
        tag = hmac_sm3(mac, key_id.encode() + iv + ct)[:16]
        if not constant_time_equal(tag, bytes.fromhex(tag_hex)):
            raise ValueError("personal-data field failed its integrity check")
        return sm4_cbc_decrypt(enc, iv, ct).decode()

    def digest(self, value: str) -> str:
        """Keyed SM3 digest for lookups; stable across encryptions of the same value."""
        _, _, index = self._derive("index")
        return hmac_sm3(index, value.encode()).hex()


@lru_cache(maxsize=8)
def field_cipher(master: bytes) -> FieldCipher:
    return FieldCipher(master)
