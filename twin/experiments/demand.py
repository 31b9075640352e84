"""Card-network demand of simulated days: calls per second of the day, by kind.

A station visit is a QR ``verify`` where a code is scanned: every visit of an online
patient, who shows a fresh dynamic code each time (one code ``refresh`` too), and the
visits of the traditional patients who show an EHC code (``traditional_code_share``); paying at a
window settles insurance for the insured (``settlement``); paying on the phone settles
insurance for the insured and pays the rest through the aggregated payment
(``settlement`` + ``payment``). The phone as the hospital's kiosk (``kiosk``): each online
patient's booking (at the time of day of their visit, a day ahead: an assumption), a look
at their place every two minutes of their wait for the doctor, and their report read when
the results are pushed. Retail pharmacies around the hospital (``retail``): the adopters'
share of ``demand.retail_purchases_per_visit`` purchases per visit show the fused code, each a
refresh, a verify, a settlement and a payment, counted in those kinds too (``retail`` says
how many of the scans were at a pharmacy, so ``total`` leaves it out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from twin.model.day import HospitalDay

CALLS = ("verify", "refresh", "settlement", "payment", "kiosk")  # summed in ``total``
KINDS = (*CALLS, "retail")
RETAIL_CALLS = ("verify", "refresh", "settlement", "payment", "retail")  # one purchase
KIOSK_STEPS = ("kiosk_booking", "kiosk_queue", "kiosk_report")  # not stations
DAY_S = 86_400


class Demand:
    """Counts per second of the day for each kind (a compact, addable sparse form)."""

    def __init__(self, start: int = 0, counts: np.ndarray | None = None) -> None:
        self.start = start
        self.counts = counts if counts is not None else np.zeros((len(KINDS), 0), np.int32)

    @classmethod
    def of_day(cls, day: HospitalDay) -> Demand:
        events = day.demand or []
        t = np.fromiter((d[0] for d in events), float, len(events))
        step = np.array([d[1] for d in events], dtype=str)
        pid = np.fromiter((d[2] for d in events), np.int64, len(events))
        online, insured = day.p.online[pid], day.p.insured[pid]
        scanned = online | day.p.shows_code[pid]
        sec = np.clip((t * 60).astype(np.int64), 0, DAY_S - 1)
        phone = step == "phone"
        kiosk = np.isin(step, KIOSK_STEPS)
        scan = ~phone & ~kiosk
        masks = {
            "verify": scan & scanned,
            "refresh": scan & online,
            "settlement": ((step == "payment") & insured) | (phone & insured),
            "payment": phone,
            "kiosk": kiosk,
            "retail": np.zeros(len(sec), bool),
        }
        shop = retail_seconds(day) if day.demand is not None else np.zeros(0, np.int64)
        sec = np.concatenate([sec, shop])
        masks = {k: np.concatenate([m, np.full(len(shop), k in RETAIL_CALLS)])
                 for k, m in masks.items()}
        if not len(sec):
            return cls()
        lo, hi = int(sec.min()), int(sec.max()) + 1
        counts = np.stack([np.bincount(sec[masks[k]] - lo, minlength=hi - lo)
                           for k in KINDS]).astype(np.int32)
        return cls(lo, counts)

    def __add__(self, other: Demand) -> Demand:
        if other.counts.shape[1] == 0:
            return self
        if self.counts.shape[1] == 0:
            return other
        lo = min(self.start, other.start)
        hi = max(self.start + self.counts.shape[1], other.start + other.counts.shape[1])
        out = np.zeros((len(KINDS), hi - lo), np.int32)
        for d in (self, other):
            out[:, d.start - lo:d.start - lo + d.counts.shape[1]] += d.counts
        return Demand(lo, out)

    def frame(self) -> pd.DataFrame:
        """One row per second of the whole day: second, clock, each kind, total."""
        full = np.zeros((len(KINDS), DAY_S), np.int64)
        full[:, self.start:self.start + self.counts.shape[1]] = self.counts
        df = pd.DataFrame(full.T, columns=list(KINDS))
        df.insert(0, "second", np.arange(DAY_S))
        df.insert(1, "clock", [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
                               for s in range(DAY_S)])
        df["total"] = df[list(CALLS)].sum(axis=1)
        return df

    def peaks(self) -> dict[str, dict[str, float]]:
        """Per kind: daily count, peak second (value and clock), 99th-percentile second
        over the seconds with any traffic, and the busiest hour's mean rate."""
        out = {}
        df = self.frame()
        for k in (*KINDS, "total"):
            v = df[k].to_numpy()
            live = v[v > 0]
            hourly = v.reshape(24, 3600).sum(axis=1)
            out[k] = {"per_day": int(v.sum()), "peak_per_s": int(v.max()),
                      "peak_at": df.clock[int(v.argmax())],
                      "p99_per_s": float(np.percentile(live, 99)) if live.size else 0.0,
                      "busiest_hour_mean_per_s": float(hourly.max() / 3600)}
        return out


def retail_seconds(day: HospitalDay) -> np.ndarray:
    """Seconds of the day of the retail pharmacy purchases made with the fused code
    around the hospital on ``day``: a Poisson count of the adopters' share of
    ``retail_purchases_per_visit`` per patient of the day, spread evenly over the
    pharmacies' hours (a stream of its own: the hospital's patients are untouched)."""
    d = day.sc.demand
    rng = day.streams("retail_purchases")
    n = rng.poisson(d.retail_purchases_per_visit * d.adoption * day.p.n)
    return (rng.uniform(d.retail_opens, d.retail_closes, n) * 60).astype(np.int64)


def write_demand(demand: Demand, path: Path, scale: float = 1.0) -> Path:
    """The CSV the Locust load shape replays: one row per second, counts × ``scale``."""
    df = demand.frame()
    if scale != 1.0:
        for k in (*KINDS, "total"):
            df[k] = df[k] * scale
    df.to_csv(path, index=False)
    return path
