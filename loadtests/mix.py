"""How many users of each kind a load test runs: a default mix, or the proportions of
the twin's demand curve.

A plain terminal scan costs one code refresh and one verify; a fused scan a fused-code
refresh and a verify that also asks the e-SSC side; a settlement a fused scan at the
payment step, a fee upload and a settle with its payment. From a demand curve with V
verifies, R refreshes (online patients) and S settlements in the day: settle users S,
fused-scan users R - S (the other online scans), plain terminal users V - R (the
traditional flow's scans); apps that only refresh, none; kiosk users (the phone at the
hospital) K / 3 for the curve's K kiosk calls (each user's visit books, looks at its place
and reads its reports). Of those scans, the curve's P at retail pharmacies (each a fused
scan at a pharmacy's till and a settlement, counted in V, R and S too) are pharmacy users:
settle users S - P, retail users P."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

KINDS = ("terminal", "fused", "settle", "app", "kiosk", "retail")
DEFAULT = {"terminal": 6, "fused": 3, "settle": 1, "app": 1, "kiosk": 1, "retail": 1}
ONLY_TERMINALS = {k: int(k == "terminal") for k in KINDS}  # capacity


NEEDED = ("verify", "refresh", "settlement")  # a demand curve's columns the mix reads


def read_demand(csv: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """The demand CSV's ``columns`` that it has; ``ValueError`` naming the file and what is
    wrong when it is no demand curve of ``ehc twin province`` (not a CSV, a column of
    ``NEEDED`` missing)."""
    try:
        df = pd.read_csv(csv, usecols=lambda c: c in columns)
    except (ValueError, UnicodeDecodeError, OSError) as exc:  # pandas' errors are ValueErrors
        raise ValueError(f"{csv}: not a CSV ({type(exc).__name__})") from None
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise ValueError(f"{csv}: not a demand curve of `ehc twin province` (no column "
                         f"{', '.join(missing)})")
    return df


def from_demand(csv: Path, total: int = 100) -> dict[str, int]:
    df = read_demand(csv, ("verify", "refresh", "settlement", "kiosk", "retail"))
    v, r, s = (float(df[c].sum()) for c in ("verify", "refresh", "settlement"))
    # curves written before a kind existed have none of it
    k, p = (float(df[c].sum()) if c in df else 0.0 for c in ("kiosk", "retail"))
    if v <= 0:
        raise ValueError(f"{csv}: the demand curve has no verifications")
    raw = {"terminal": max(v - r, 0.0), "fused": max(r - s, 0.0),
           "settle": max(min(s, r) - p, 0.0), "app": 0.0,
           "kiosk": k / 3,  # a kiosk user's visit: book, queue place, reports
           "retail": p}
    scale = total / sum(raw.values())
    return {k: round(x * scale) for k, x in raw.items()}


def encode(weights: dict[str, int]) -> str:
    return ",".join(f"{k}:{weights.get(k, 0)}" for k in KINDS)


def decode(text: str | None) -> dict[str, int]:
    if not text:
        return dict(DEFAULT)
    out = dict.fromkeys(KINDS, 0)
    for part in text.split(","):
        k, _, v = part.partition(":")
        if k not in out or not v.isdigit():
            raise ValueError(f"--ehc-weights: {part!r} is not kind:integer ({', '.join(KINDS)})")
        out[k] = int(v)
    return out
