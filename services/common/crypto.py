"""SM2 / SM3 / SM4 primitives of the Chinese commercial cryptography standards.

Nothing here implements a primitive: SM3 and HMAC-SM3 come from OpenSSL (``hashlib``),
SM4 from OpenSSL through ``cryptography``, SM2 from the C library ``gmalglib`` (chosen
by measurement, see ``bench/bench_crypto.py``: it signs with any user ID, as GB/T 32918
asks, where the OpenSSL-based wheels fix the default ID). DER encoding of signatures
uses ``cryptography``'s vetted helpers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
from functools import lru_cache

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from gmalglib.sm2 import SM2

DEFAULT_UID = b"1234567812345678"
SM4_BLOCK = 16
_SM2_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
# SubjectPublicKeyInfo header for an uncompressed SM2 point: id-ecPublicKey + curve sm2.
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")


class CryptoError(ValueError):
    """Raised for malformed keys or data handed to an encrypting/signing function."""


# --------------------------------------------------------------------------- SM3
_SM3 = hashlib.new("sm3")  # copied per digest: OpenSSL looks the algorithm up once


def sm3(data: bytes) -> bytes:
    """SM3 digest (GB/T 32905), 32 bytes."""
    h = _SM3.copy()
    h.update(data)
    return h.digest()


def sm3_hex(text: str) -> str:
    """SM3 of a text, in hex: how a bearer secret (session token, challenge, grant code)
    is stored, so the store never holds the secret itself."""
    return sm3(text.encode()).hex()


_HMAC_KEYED: dict[bytes, hmac.HMAC] = {}  # a key's HMAC state, its pads already hashed


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC with SM3 (RFC 2104 over SM3), 32 bytes. A key's state after its pads is kept
    (a few hundred keys at most: terminals', apps', the code and chain keys) and copied
    per message: the hot path MACs every request with a handful of keys."""
    keyed = _HMAC_KEYED.get(key)
    if keyed is None:
        if len(_HMAC_KEYED) >= 1024:
            _HMAC_KEYED.clear()
        keyed = _HMAC_KEYED[key] = hmac.new(key, digestmod="sm3")
    h = keyed.copy()
    h.update(data)
    return h.digest()


def constant_time_equal(a: bytes | str, b: bytes | str) -> bool:
    """Compare two secrets without leaking where they differ."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


# --------------------------------------------------------------------------- SM4
def _check_sm4(key: bytes, data: bytes) -> None:
    if len(key) != 16:
        raise CryptoError(f"SM4 key must be 16 bytes, got {len(key)}")
    if len(data) % SM4_BLOCK:
        raise CryptoError(f"SM4-ECB data must be a multiple of 16 bytes, got {len(data)}")


def sm4_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """SM4 in ECB mode without padding (GB/T 32907); data length a multiple of 16."""
    _check_sm4(key, data)
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def sm4_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """Inverse of :func:`sm4_ecb_encrypt`."""
    _check_sm4(key, data)
    dec = Cipher(algorithms.SM4(key), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


_ECB_CONTEXTS = threading.local()


def _ecb_context(direction: str, key: bytes):
    """A per-thread, per-key ECB context that is reused: ECB keeps no state between
    blocks, so ``update`` on whole blocks is the same operation without building a cipher
    context per call (the hot path's case)."""
    cache = getattr(_ECB_CONTEXTS, direction, None)
    if cache is None:
        cache = {}
        setattr(_ECB_CONTEXTS, direction, cache)
    ctx = cache.get(key)
    if ctx is None:
        if len(cache) > 64:
            cache.clear()
        cipher = Cipher(algorithms.SM4(key), modes.ECB())
        ctx = cache[key] = cipher.decryptor() if direction == "dec" else cipher.encryptor()
    return ctx


def sm4_ecb_decrypt_fast(key: bytes, data: bytes) -> bytes:
    """:func:`sm4_ecb_decrypt` on a reused context (``_ecb_context``)."""
    _check_sm4(key, data)
    return _ecb_context("dec", key).update(data)


def sm4_ecb_encrypt_fast(key: bytes, data: bytes) -> bytes:
    """:func:`sm4_ecb_encrypt` on a reused context (``_ecb_context``)."""
    _check_sm4(key, data)
    return _ecb_context("enc", key).update(data)


def sm4_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """SM4-CBC with PKCS#7 padding."""
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    return enc.update(padded) + enc.finalize()


def sm4_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of :func:`sm4_cbc_encrypt`; raises ``ValueError`` on bad padding."""
    dec = Cipher(algorithms.SM4(key), modes.CBC(iv)).decryptor()
    padded = dec.update(ciphertext) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


# --------------------------------------------------------------------------- SM2
def _hex_bytes(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except (ValueError, TypeError) as exc:
        raise CryptoError(f"{what} is not hex") from exc


def sm2_generate_keypair() -> tuple[str, str]:
    """A fresh SM2 key pair: (private key as 64 hex, public key as ``04||x||y`` hex)."""
    while True:
        sk = secrets.token_bytes(32)
        if SM2.is_sk_valid(sk):
            return sk.hex(), SM2.get_pk(sk).hex()


def sm2_public_from_private(private_hex: str) -> str:
    """The uncompressed public key (``04||x||y`` hex) of a private key."""
    sk = _hex_bytes(private_hex, "SM2 private key")
    if len(sk) != 32 or not SM2.is_sk_valid(sk):
        raise CryptoError("invalid SM2 private key")
    return SM2.get_pk(sk).hex()


def _nonce(n: int) -> bytes:
    # gmalglib reads the nonce little-endian; any uniform bytes from secrets will do.
    return secrets.token_bytes(n)


@lru_cache(maxsize=4096)
def _signer(private_hex: str, uid: bytes) -> SM2:
    sk = _hex_bytes(private_hex, "SM2 private key")
    if len(sk) != 32 or not SM2.is_sk_valid(sk):
        raise CryptoError("invalid SM2 private key")
    return SM2(sk, uid=uid, rnd_fn=_nonce)


@lru_cache(maxsize=65536)
def _verifier(public_hex: str, uid: bytes) -> SM2 | None:
    try:
        pk = bytes.fromhex(public_hex)
    except ValueError:
        return None
    if len(pk) != 65 or pk[0] != 4 or not SM2.is_pk_valid(pk):
        return None
    return SM2(pk=pk, uid=uid)


def sm2_sign(private_hex: str, message: bytes, uid: bytes = DEFAULT_UID) -> bytes:
    """SM2 signature of ``message`` with user ID ``uid`` (Z value per GB/T 32918), DER."""
    raw = _signer(private_hex.lower(), bytes(uid)).sign(message)
    r = int.from_bytes(raw[:32], "big")
    s = int.from_bytes(raw[32:], "big")
    return encode_dss_signature(r, s)


def _raw_signature(signature: bytes) -> bytes | None:
    """DER or raw r||s to raw r||s, or None when it is neither or out of range."""
    if len(signature) == 64:
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:], "big")
    else:
        try:
            r, s = decode_dss_signature(signature)
        except ValueError:
            return None
    if not (0 < r < _SM2_N and 0 < s < _SM2_N):
        return None
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sm2_verify(
    public_hex: str, message: bytes, signature: bytes, uid: bytes = DEFAULT_UID
) -> bool:
    """True when ``signature`` (DER or raw r||s) is valid; False for anything malformed."""
    try:
        verifier = _verifier(public_hex.lower(), bytes(uid))
        raw = _raw_signature(bytes(signature))
        if verifier is None or raw is None:
            return False
        return bool(verifier.verify(message, raw))
    except Exception:  # a malformed input must never raise out of a verify
        return False


def sm2_public_key_pem(public_hex: str) -> str:
    """PEM SubjectPublicKeyInfo of an SM2 public key, as OpenSSL 3 reads it."""
    pk = _hex_bytes(public_hex, "SM2 public key")
    if len(pk) != 65 or pk[0] != 4:
        raise CryptoError("SM2 public key must be uncompressed 04||x||y")
    body = base64.encodebytes(_SPKI_PREFIX + pk).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"
