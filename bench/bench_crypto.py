"""SM2/SM3/SM4 ops/s of ours beside gmssl (pure Python), measured in the same run."""

from __future__ import annotations

import secrets

from gmssl import sm2 as gm_sm2
from gmssl import sm3 as gm_sm3
from gmssl import sm4 as gm_sm4
from rich.console import Console
from rich.table import Table

from services.common import crypto

from .common import ops_per_second, save


def main() -> None:
    sk, pk = crypto.sm2_generate_keypair()
    msg = secrets.token_bytes(100)
    sig = crypto.sm2_sign(sk, msg)
    ref = gm_sm2.CryptSM2(private_key=sk, public_key="")
    ref.public_key = pk[2:]  # the constructor's lstrip("04") would eat x's leading 0s/4s
    r, s = crypto.decode_dss_signature(sig)
    ref_sig = f"{r:064x}{s:064x}"
    key, block = secrets.token_bytes(16), secrets.token_bytes(64)
    ref4 = gm_sm4.CryptSM4(padding_mode=3)
    ref4.set_key(key, gm_sm4.SM4_ENCRYPT)
    msg_list = list(msg)
    cases = {
        "SM2 sign": (lambda: crypto.sm2_sign(sk, msg),
                     lambda: ref.sign_with_sm3(msg, secrets.token_hex(32))),
        "SM2 verify": (lambda: crypto.sm2_verify(pk, msg, sig),
                       lambda: ref.verify_with_sm3(ref_sig, msg)),
        "SM3 (100 B)": (lambda: crypto.sm3(msg), lambda: gm_sm3.sm3_hash(msg_list)),
        "SM4-ECB (64 B)": (lambda: crypto.sm4_ecb_encrypt(key, block),
                           lambda: ref4.crypt_ecb(block)),
    }
    table = Table(title="Cryptography, ops/s on one core (same run)")
    for c in ("operation", "ours", "gmssl", "ratio"):
        table.add_column(c, justify="right")
    out = {}
    for name, (ours, theirs) in cases.items():
        a, b = ops_per_second(ours), ops_per_second(theirs)
        out[name] = {"ours_ops_s": a, "gmssl_ops_s": b, "ratio": a / b}
        table.add_row(name, f"{a:,.0f}", f"{b:,.0f}", f"{a / b:,.1f}x")
    Console().print(table)
    verdict = out["SM2 verify"]["ratio"] >= 25
    print(f"target SM2 verify >= 25x gmssl: {'met' if verdict else 'NOT met'} "
          f"({out['SM2 verify']['ratio']:.1f}x)")
    print("wrote", save("crypto", {"results": out, "target_sm2_verify_ratio_met": verdict}))


if __name__ == "__main__":
    main()
