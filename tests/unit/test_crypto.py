"""SM2/SM3/SM4 against the standards' vectors, gmssl (pure Python) and the openssl CLI."""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gmssl import func as gm_func
from gmssl import sm2 as gm_sm2
from gmssl import sm3 as gm_sm3
from gmssl import sm4 as gm_sm4

from services.common import crypto
from services.common.crypto import (
    hmac_sm3,
    sm2_generate_keypair,
    sm2_sign,
    sm2_verify,
    sm3,
    sm4_ecb_decrypt,
    sm4_ecb_encrypt,
)

# GB/T 32905-2016 appendix A.
SM3_VECTORS = [
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
]
# GB/T 32907-2016 appendix A.
SM4_KEY = bytes.fromhex("0123456789abcdeffedcba9876543210")
SM4_CIPHER = "681edf34d206965e86b3e94f536e4246"
SM4_MILLION = "595298c7c6fd271f0402f804c33d3f66"
# GB/T 32918.5-2017 appendix A (recommended curve, ID 1234567812345678, message digest).
SM2_D = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
SM2_PUB = (
    "0409F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
SM2_K = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
SM2_R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
SM2_S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
SM2_Z = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"


@pytest.mark.parametrize(("msg", "digest"), SM3_VECTORS)
def test_sm3_standard_vectors(msg: bytes, digest: str) -> None:
    assert sm3(msg).hex() == digest
    assert gm_sm3.sm3_hash(gm_func.bytes_to_list(msg)) == digest


def test_hmac_sm3_matches_rfc2104_construction() -> None:
    key, msg = secrets.token_bytes(20), secrets.token_bytes(100)
    block = 64
    k = key.ljust(block, b"\0")
    inner = sm3(bytes(b ^ 0x36 for b in k) + msg)
    assert hmac_sm3(key, msg) == sm3(bytes(b ^ 0x5C for b in k) + inner)


def _rfc2104(key: bytes, msg: bytes) -> bytes:
    k = (sm3(key) if len(key) > 64 else key).ljust(64, b"\0")
    return sm3(bytes(b ^ 0x5C for b in k) + sm3(bytes(b ^ 0x36 for b in k) + msg))


def test_kept_hmac_states_give_each_key_and_message_its_own_mac() -> None:
    """A key's state is kept and copied per message: the same key twice, more keys than
    are kept, a key longer than SM3's block, from several threads at once."""
    keys = [secrets.token_bytes(n) for n in (0, 1, 16, 64, 65, 200)] + [
        secrets.token_bytes(16) for _ in range(1100)]
    msgs = [b"", b"abc", secrets.token_bytes(300)]
    for key in keys[:6]:
        for msg in msgs + msgs:
            assert hmac_sm3(key, msg) == _rfc2104(key, msg)

    def every_key(_: int) -> bool:
        return all(hmac_sm3(key, msg) == _rfc2104(key, msg)
                   for key in keys[::37] for msg in msgs)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(every_key, range(8)))
    assert all(hmac_sm3(k, b"m") == _rfc2104(k, b"m") for k in keys)  # past the bound
    assert sm3(b"abc") == sm3(b"abc")  # the shared SM3 state is never updated itself


def test_sm4_standard_vectors() -> None:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    assert sm4_ecb_encrypt(SM4_KEY, SM4_KEY).hex() == SM4_CIPHER
    assert sm4_ecb_decrypt(SM4_KEY, bytes.fromhex(SM4_CIPHER)) == SM4_KEY
    block = SM4_KEY
    # the million-fold iteration of appendix A.2, done with one key schedule
    enc = Cipher(algorithms.SM4(SM4_KEY), modes.ECB()).encryptor()
    for _ in range(1_000_000):
        block = enc.update(block)
    assert block.hex() == SM4_MILLION


def test_sm4_agrees_with_gmssl_and_rejects_bad_lengths() -> None:
    for _ in range(50):
        key, data = secrets.token_bytes(16), secrets.token_bytes(16 * secrets.randbelow(5) + 16)
        ref = gm_sm4.CryptSM4(padding_mode=3)  # no padding
        ref.set_key(key, gm_sm4.SM4_ENCRYPT)
        assert sm4_ecb_encrypt(key, data) == bytes(ref.crypt_ecb(data))
        assert sm4_ecb_decrypt(key, sm4_ecb_encrypt(key, data)) == data
        # the hot path's reused contexts: the same answers, call after call, key by key
        assert crypto.sm4_ecb_encrypt_fast(key, data) == bytes(ref.crypt_ecb(data))
        assert crypto.sm4_ecb_encrypt_fast(SM4_KEY, SM4_KEY).hex() == SM4_CIPHER
        assert crypto.sm4_ecb_decrypt_fast(key, crypto.sm4_ecb_encrypt_fast(key, data)) == data
    with pytest.raises(crypto.CryptoError):
        sm4_ecb_encrypt(SM4_KEY, b"short")
    with pytest.raises(crypto.CryptoError):
        sm4_ecb_encrypt(b"k" * 15, b"x" * 16)
    with pytest.raises(crypto.CryptoError):
        crypto.sm4_ecb_encrypt_fast(SM4_KEY, b"short")


def test_sm2_annex_a_example_with_fixed_k() -> None:
    from gmalglib.sm2 import SM2

    assert crypto.sm2_public_from_private(SM2_D).upper() == SM2_PUB
    k = bytes.fromhex(SM2_K)
    signer = SM2(bytes.fromhex(SM2_D), uid=crypto.DEFAULT_UID, rnd_fn=lambda n: k[::-1])
    assert signer.get_entity_info().hex().upper() == SM2_Z
    raw = signer.sign(b"message digest")
    assert raw.hex().upper() == SM2_R + SM2_S
    assert sm2_verify(SM2_PUB, b"message digest", raw)
    der = crypto.encode_dss_signature(int(SM2_R, 16), int(SM2_S, 16))
    assert sm2_verify(SM2_PUB.lower(), b"message digest", der)
    assert not sm2_verify(SM2_PUB, b"message digesT", der)


def test_sm2_user_id_enters_the_signature() -> None:
    sk, pk = sm2_generate_keypair()
    sig = sm2_sign(sk, b"payload", uid=b"ALICE123@YAHOO.COM")
    assert sm2_verify(pk, b"payload", sig, uid=b"ALICE123@YAHOO.COM")
    assert not sm2_verify(pk, b"payload", sig)


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x30\x00", b"\x00" * 64, b"\xff" * 64, b"\x30\x44" + b"\x02" * 68, b"not a sig"],
)
def test_sm2_verify_is_false_never_raises_on_malformed(bad: bytes) -> None:
    _, pk = sm2_generate_keypair()
    assert sm2_verify(pk, b"m", bad) is False
    assert sm2_verify("04" + "00" * 64, b"m", bad) is False
    assert sm2_verify("nothex", b"m", bad) is False


def _gmssl_pair(sk: str, pk: str) -> gm_sm2.CryptSM2:
    # gmssl's constructor does public_key.lstrip("04"), which also eats leading '0'/'4'
    # digits of x (even after we strip the prefix ourselves): set the 128 hex characters
    # after construction, where nothing strips them.
    assert pk.startswith("04") and len(pk) == 130
    pair = gm_sm2.CryptSM2(private_key=sk, public_key="")
    pair.public_key = pk[2:]
    return pair


def test_gmssl_prefix_pitfall_is_real_and_handled() -> None:
    # find a key whose x starts with '0' or '4': the naive call breaks, ours does not
    while True:
        sk, pk = sm2_generate_keypair()
        if pk[2:4] in ("00", "04", "40", "44"):
            break
    naive = gm_sm2.CryptSM2(private_key=sk, public_key=pk)
    assert len(naive.public_key) < 128
    assert len(_gmssl_pair(sk, pk).public_key) == 128


def test_cross_verification_with_gmssl_both_ways() -> None:
    """gmssl itself crashes (TypeError inside its point addition) on rare inputs; such a
    crash is the reference failing, not a disagreement. Allow a few, require agreement on
    every sample it could compute."""
    crashes, checked = 0, 0
    for i in range(60):
        sk, pk = sm2_generate_keypair()
        msg = secrets.token_bytes(1 + i * 7)
        ref = _gmssl_pair(sk, pk)
        der = sm2_sign(sk, msg)
        r, s = crypto.decode_dss_signature(der)
        try:
            # ours -> gmssl (gmssl wants raw r||s hex)
            assert ref.verify_with_sm3(f"{r:064x}{s:064x}", msg)
            # gmssl -> ours, with a nonce from secrets (gmssl's default nonce uses `random`)
            ref_sig = ref.sign_with_sm3(msg, secrets.token_hex(32))
        except TypeError:
            crashes += 1
            continue
        assert sm2_verify(pk, msg, bytes.fromhex(ref_sig))
        assert not sm2_verify(pk, msg + b"x", bytes.fromhex(ref_sig))
        checked += 1
    assert crashes <= 3 and checked >= 57, (crashes, checked)


def test_signatures_are_randomised() -> None:
    sk, _pk = sm2_generate_keypair()
    assert sm2_sign(sk, b"same") != sm2_sign(sk, b"same")


openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not found")


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=False, check=False)


@openssl
def test_signature_made_here_verifies_in_openssl(tmp_path: Path) -> None:
    sk, pk = sm2_generate_keypair()
    msg = b"ehc-twin interop " + secrets.token_bytes(16)
    (tmp_path / "pub.pem").write_text(crypto.sm2_public_key_pem(pk))
    (tmp_path / "msg").write_bytes(msg)
    (tmp_path / "sig").write_bytes(sm2_sign(sk, msg))
    common = ["-pubin", "-inkey", str(tmp_path / "pub.pem"), "-rawin", "-digest", "sm3",
              "-pkeyopt", "distid:1234567812345678", "-in", str(tmp_path / "msg")]
    ok = _openssl("pkeyutl", "-verify", *common, "-sigfile", str(tmp_path / "sig"))
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "msg").write_bytes(msg + b"!")
    bad = _openssl("pkeyutl", "-verify", *common, "-sigfile", str(tmp_path / "sig"))
    assert bad.returncode != 0


@openssl
def test_signature_made_by_openssl_verifies_here(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    assert _openssl("genpkey", "-algorithm", "SM2", "-out", str(key)).returncode == 0
    text = _openssl("pkey", "-in", str(key), "-text", "-noout").stdout.decode()
    pub_block = text.split("pub:")[1].split("ASN1")[0]
    pk = re.sub(r"[^0-9a-f]", "", pub_block)
    assert len(pk) == 130 and pk.startswith("04")
    msg = b"signed by openssl " + secrets.token_bytes(8)
    (tmp_path / "msg").write_bytes(msg)
    res = _openssl("pkeyutl", "-sign", "-inkey", str(key), "-rawin", "-digest", "sm3",
                   "-pkeyopt", "distid:1234567812345678", "-in", str(tmp_path / "msg"))
    assert res.returncode == 0, res.stderr
    assert sm2_verify(pk, msg, res.stdout)
    assert not sm2_verify(pk, msg + b"x", res.stdout)
    # and the private key openssl wrote signs here in a way openssl's public key accepts
    priv = re.sub(r"[^0-9a-f]", "", text.split("priv:")[1].split("pub:")[0])[-64:]
    assert crypto.sm2_public_from_private(priv) == pk


@openssl
def test_sm3_and_sm4_agree_with_openssl_cli(tmp_path: Path) -> None:
    data = secrets.token_bytes(333)
    (tmp_path / "d").write_bytes(data)
    out = _openssl("dgst", "-sm3", "-r", str(tmp_path / "d")).stdout.decode().split()[0]
    assert out == sm3(data).hex()
    key, block = secrets.token_bytes(16), secrets.token_bytes(64)
    (tmp_path / "b").write_bytes(block)
    enc = _openssl("enc", "-sm4-ecb", "-nopad", "-K", key.hex(), "-in", str(tmp_path / "b"))
    assert enc.returncode == 0, enc.stderr
    assert enc.stdout == sm4_ecb_encrypt(key, block)


def _documented_signing_example() -> tuple[str, str]:
    """The string and signature of the engineers' guide's worked signing example."""
    guide = (Path(__file__).resolve().parents[2] / "docs/engineers.md").read_text()
    part = guide.split("**Signing without the SDK**", 1)[1]
    block = part.split("```\n", 2)[1]
    signature = part.split("`HMAC-SM3` signature is\n`", 1)[1].split("`", 1)[0]
    return block.rstrip("\n"), signature


def test_the_guides_signing_example_is_what_the_server_checks() -> None:
    """A client in another language signs from the guide: its worked example is the
    server's own canonical string and HMAC-SM3 (``check_signature`` accepts it)."""
    from services.common.signing import canonical_request, check_signature

    block, signature = _documented_signing_example()
    msg = canonical_request("GET", "/ehc/v1/cards/C1/qrcode", "kind=fused&b=a%20b",
                            "1767225600", "n0nce-0123456789ab", b"")
    assert msg.decode() == block
    assert hmac_sm3(b"s3cret-of-T0001", msg).hex() == signature
    headers = {"x-ehc-key": "T0001", "x-ehc-timestamp": "1767225600",
               "x-ehc-nonce": "n0nce-0123456789ab", "x-ehc-signature": signature}
    assert check_signature(headers, "GET", "/ehc/v1/cards/C1/qrcode", "b=a+b&kind=fused",
                           b"", secret="s3cret-of-T0001", sm2_public_hex=None, store=None,
                           max_age_s=300, now=1767225600.0)


@openssl
def test_the_guides_signing_example_in_openssl() -> None:
    block, signature = _documented_signing_example()
    body_hash = _openssl("dgst", "-sm3", "-r", "/dev/null").stdout.split()[0].decode()
    assert block.endswith(body_hash)  # SM3 of an empty body
    mac = subprocess.run(["openssl", "dgst", "-sm3", "-mac", "HMAC", "-macopt",
                          "key:s3cret-of-T0001", "-r"], input=block.encode(),
                         capture_output=True, check=True).stdout.split()[0].decode()
    assert mac == signature
