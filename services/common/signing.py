"""Signed requests of channel apps and terminals.

A caller signs ``METHOD\\nPATH\\nSORTED_QUERY\\nTIMESTAMP\\nNONCE\\nSM3(body)`` with its
secret (HMAC-SM3) or its SM2 key, and sends::

    X-EHC-Key        app key or terminal ID
    X-EHC-Timestamp  unix seconds
    X-EHC-Nonce      16..64 url-safe characters, never reused
    X-EHC-Sign-Method  HMAC-SM3 (default) or SM2
    X-EHC-Signature  hex

The server refuses a missing, stale (beyond the allowed age), replayed or wrong signature.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .crypto import constant_time_equal, hmac_sm3, sm2_sign, sm2_verify, sm3
from .errors import RateLimited, Unauthenticated
from .shared_store import SharedStore

H_KEY = "x-ehc-key"
H_TS = "x-ehc-timestamp"
H_NONCE = "x-ehc-nonce"
H_METHOD = "x-ehc-sign-method"
H_SIG = "x-ehc-signature"
_NONCE_RE = re.compile(r"[A-Za-z0-9_\-]{16,64}")
_TS_RE = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() passes "¹²³"


def canonical_request(
    method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes
) -> bytes:
    return "\n".join(
        (method.upper(), path, sorted_query(query), timestamp, nonce, sm3(body).hex())
    ).encode()


def sorted_query(query: str) -> str:
    """The query as signed: its pairs sorted and encoded again; a short one from a cache
    (a code refresh signs one of a few, "kind=fused"), a long one, which a client may
    make up, never kept."""
    return _sorted_short(query) if len(query) <= 128 else _sorted(query)


def _sorted(query: str) -> str:
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True))) if query else ""


_sorted_short = lru_cache(maxsize=1024)(_sorted)


def sign_headers(
    key: str,
    method: str,
    path: str,
    body: bytes = b"",
    query: str = "",
    *,
    secret: str | None = None,
    sm2_private_hex: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Headers that authenticate one request (client side)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = secrets.token_urlsafe(18)
    msg = canonical_request(method, path, query, ts, nonce, body)
    if sm2_private_hex is not None:
        sig, how = sm2_sign(sm2_private_hex, msg).hex(), "SM2"
    elif secret is not None:
        sig, how = hmac_sm3(secret.encode(), msg).hex(), "HMAC-SM3"
    else:
        raise ValueError("a secret or an SM2 private key is needed to sign")
    return {"X-EHC-Key": key, "X-EHC-Timestamp": ts, "X-EHC-Nonce": nonce,
            "X-EHC-Sign-Method": how, "X-EHC-Signature": sig}


def refuse_rate(store: SharedStore, caller: str, rate: float) -> None:
    """At most ``rate`` signed requests a second per caller on average over two seconds
    (bursts up to two seconds' worth: ``shared_store.paced``), counted by every worker
    alike; 0 = no limit."""
    refuse_wait(store.pace("rate:" + caller, RATE_WINDOW_S, rate_limit(rate))
                if rate > 0 else 0.0, rate)


def refuse_wait(wait: float, rate: float) -> None:
    """RATE_LIMITED when the caller must wait ``wait`` seconds (over ``rate`` a second);
    every store and path refuses with this one answer."""
    if wait:
        raise RateLimited("RATE_LIMITED", f"more than {rate:g} requests a second",
                          headers={"Retry-After": str(max(1, math.ceil(wait)))})


def refuse_replay(claimed: bool) -> None:
    """SIGNATURE_REPLAYED unless this request's nonce was claimed just now."""
    if not claimed:
        raise Unauthenticated("SIGNATURE_REPLAYED", "nonce already used")


async def admit_async(store: Any, a: Admission, rate: float) -> None:
    """``check_signature``'s nonce claim and ``refuse_rate`` on a store's asyncio client
    (Redis, from the event loop, one round trip): the same refusals, the loop free while
    it answers."""
    wait = await store.admit_async(a.token, a.expires_at - time.time(), a.bucket,
                                   RATE_WINDOW_S, a.limit)
    refuse_replay(wait is not None)
    refuse_wait(wait or 0.0, rate)


@dataclass(frozen=True)
class Admission:
    """A verified signature whose nonce (and rate count) is still to be written: the hot
    path writes both in the transaction of the scan itself (a row of ``shared_nonces``,
    and the caller's paced rate bucket: ``shared_store.pace_sql``)."""

    token: str
    bucket: str
    expires_at: float  # the nonce's (``nonce_expiry``), epoch seconds
    limit: int  # signed requests per RATE_WINDOW_S; 0 = no limit


RATE_WINDOW_S = 2.0


def rate_limit(rate: float) -> int:
    """Requests allowed per ``RATE_WINDOW_S`` for ``rate`` a second (0: no limit)."""
    return max(int(RATE_WINDOW_S * rate), 1) if rate > 0 else 0


def check_signature(
    headers: Mapping[str, str],
    method: str,
    path: str,
    query: str,
    body: bytes,
    *,
    secret: str | None,
    sm2_public_hex: str | None,
    store: SharedStore | None,
    max_age_s: int,
    now: float | None = None,
) -> str:
    """Raise ``Unauthenticated`` unless the request carries a fresh, unused, valid
    signature; the nonce's token. With ``store`` None the nonce is left for the caller
    to claim (see ``Admission``)."""
    ts, nonce, sig = headers.get(H_TS), headers.get(H_NONCE), headers.get(H_SIG)
    key = headers.get(H_KEY, "")
    if not ts or not nonce or not sig:
        raise Unauthenticated("SIGNATURE_MISSING", "request is not signed")
    now = time.time() if now is None else now
    if not _TS_RE.fullmatch(ts) or abs(now - int(ts)) > max_age_s:
        raise Unauthenticated("SIGNATURE_STALE", f"timestamp outside +-{max_age_s}s")
    if not _NONCE_RE.fullmatch(nonce):
        raise Unauthenticated("SIGNATURE_INVALID", "malformed nonce")
    msg = canonical_request(method, path, query, ts, nonce, body)
    how = headers.get(H_METHOD, "HMAC-SM3").upper()
    try:
        sig_bytes = bytes.fromhex(sig)
    except ValueError:
        sig_bytes = b""
    if how == "SM2" and sm2_public_hex:
        ok = sm2_verify(sm2_public_hex, msg, sig_bytes)
    elif how == "HMAC-SM3" and secret:
        ok = constant_time_equal(hmac_sm3(secret.encode(), msg), sig_bytes)
    else:
        ok = False
    if not ok:
        raise Unauthenticated("SIGNATURE_INVALID", "signature does not match")
    token = f"nonce:{key}:{nonce}"
    if store is not None:
        refuse_replay(store.claim(token, nonce_expiry(ts, max_age_s) - now))
    return token


NONCE_SLACK_S = 60  # servers' clocks apart by up to this still refuse a replay


def nonce_expiry(ts: str, max_age_s: int) -> float:
    """Until when a request's nonce is kept (epoch seconds): until its signed timestamp
    ``ts`` is stale (any replay after that is refused as such), plus the slack for
    another server whose clock runs behind this one's."""
    return float(int(ts) + max_age_s + NONCE_SLACK_S)
