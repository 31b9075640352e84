"""From one simulated day to tidy frames and the KPIs planners read (stable names)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from twin.model.day import HospitalDay
from twin.model.names import WINDOWS

KPI_UNITS = {
    "visit_time": "min", "visit_time_traditional": "min", "visit_time_online": "min",
    "wait_registration": "min", "wait_payment": "min", "wait_pharmacy": "min",
    "wait_doctor": "min", "wait_doctor_traditional": "min", "wait_doctor_online": "min",
    "doctor_time": "min", "consult_median": "min", "walks": "walks",
    "kiosk_uses": "uses", "window_staff_hours": "h", "window_busy_hours": "h",
    "patients": "patients", "no_shows": "patients", "online_share": "share",
    "time_saved": "min", "deferral": "min", "deferral_p90": "min",
    "overtime_patients": "patients", "last_departure": "min",
}


WAIT_KPIS = {"wait_registration": "registration window", "wait_payment": "payment window",
             "wait_pharmacy": "pharmacy window"}
KPI_UNITS.update({f"{k}_p90": "min" for k in WAIT_KPIS})
KPI_UNITS.update({f"{k}_within_target": "share" for k in WAIT_KPIS})


def patients_frame(day: HospitalDay) -> pd.DataFrame:
    p = day.p
    depart = np.asarray(day.depart, dtype=float)
    shown = ~day.absent
    df = pd.DataFrame({
        "patient": np.arange(p.n),
        "flow": np.where(p.online, "online", "traditional"),
        "age_group": np.array(["child", "adult", "elderly"])[p.age],
        "insured": p.insured,
        "department": np.array([d.name for d in day.sc.hospital.departments])[p.dept],
        "arrival": day.start_at,
        # an appointment holder's booked time minus when they would have walked in
        # (signed: a precise time inside the half hour may be earlier; NaN for walk-ins)
        "deferral": np.where(p.online, day.booked - p.arrival, np.nan),
        "departure": depart,
        "visit_time": depart - day.start_at,
        "wait_registration": day.w_reg,
        "wait_payment": day.w_pay,
        "wait_pharmacy": day.w_pharm,
        "wait_doctor": day.w_doc,
        "doctor_time": day.doc_time,
        "walks": day.walks,
        "kiosk_uses": day.kiosk_uses,
        "tests": p.test,
        "prescription": p.rx,
    })
    return df[shown].reset_index(drop=True)


def steps_frame(day: HospitalDay) -> pd.DataFrame:
    return pd.DataFrame(day.steps, columns=["patient", "step", "station", "queued_at",
                                            "wait", "service"])


def service_level(waits: list[float], target_min: float) -> dict[str, float]:
    """Percentiles of the queue wait per use and the share of uses served within the
    target (the 10-minute policy target by default: ``service_target_min``)."""
    w = np.asarray(waits, dtype=float)
    if not len(w):
        return {"p50_wait": 0.0, "p90_wait": 0.0, "p95_wait": 0.0, "within_target": 1.0}
    p50, p90, p95 = np.percentile(w, [50, 90, 95])
    return {"p50_wait": float(p50), "p90_wait": float(p90), "p95_wait": float(p95),
            "within_target": float((w <= target_min).mean())}


def stations_frame(day: HospitalDay) -> pd.DataFrame:
    rows = []
    for st in day.stations.values():
        q = np.asarray(st.queue_samples or [0])
        staffed = st.staffed_minutes(day.sc.day.arrivals_from, day.end)
        rows.append({"station": st.name, "capacity": st.capacity, "uses": st.uses,
                     "staffed_hours": staffed / 60, "busy_hours": st.busy / 60,
                     "utilisation": st.busy / max(staffed, 1e-9),
                     "mean_wait": st.wait_sum / st.uses if st.uses else 0.0,
                     **service_level(st.waits, day.sc.service_target_min),
                     "mean_queue": float(q.mean()), "max_queue": int(q.max())})
    return pd.DataFrame(rows)


def queue_frame(day: HospitalDay) -> pd.DataFrame:
    if day.sample_every is None:
        raise ValueError("the day was run without sampling its queues (sample_every=None)")
    rows = []
    for st in day.stations.values():
        times = day.monitor_start + day.sample_every * np.arange(len(st.queue_samples))
        rows.append(pd.DataFrame({"time": times, "station": st.name,
                                  "queue_length": st.queue_samples}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else np.nan


def kpis(day: HospitalDay) -> dict[str, Any]:
    """One replication's KPIs (means per visit unless the name says otherwise), over the
    patients who came (read from the day's arrays: a province computes them for
    thousands of days)."""
    p, shown = day.p, ~day.absent
    online = p.online[shown]
    depart = np.asarray(day.depart, dtype=float)[shown]
    visit = depart - day.start_at[shown]
    w_doc = np.asarray(day.w_doc, dtype=float)[shown]
    st = {s.name: s for s in day.stations.values()}
    per_use = {n: (st[n].wait_sum / st[n].uses if st[n].uses else 0.0) for n in WINDOWS}
    staffed = sum(st[n].staffed_minutes(day.sc.day.arrivals_from, day.end)
                  for n in WINDOWS) / 60
    levels = {key: service_level(st[name].waits, day.sc.service_target_min)
              for key, name in WAIT_KPIS.items()}
    first = p.consult1[shown]  # as drawn, whether or not steps are kept
    deferral = (day.booked - p.arrival)[shown][online]
    return {
        "patients": int(len(visit)),
        "no_shows": int(np.count_nonzero(day.absent)),
        "online_share": float(online.mean()) if len(online) else 0.0,
        "visit_time": _mean(visit),
        "visit_time_traditional": _mean(visit[~online]),
        "visit_time_online": _mean(visit[online]),
        **{f"{key}_p90": level["p90_wait"] for key, level in levels.items()},
        **{f"{key}_within_target": level["within_target"] for key, level in levels.items()},
        "wait_registration": per_use["registration window"],
        "wait_payment": per_use["payment window"],
        "wait_pharmacy": per_use["pharmacy window"],
        "wait_doctor": _mean(w_doc),
        "wait_doctor_traditional": _mean(w_doc[~online]),
        "wait_doctor_online": _mean(w_doc[online]),
        "doctor_time": _mean(np.asarray(day.doc_time, dtype=float)[shown]),
        "consult_median": float(np.median(first)) if len(first) else np.nan,
        "walks": _mean(np.asarray(day.walks, dtype=float)[shown]),
        "kiosk_uses": int(np.asarray(day.kiosk_uses)[shown].sum()),
        "window_staff_hours": staffed,
        "window_busy_hours": sum(st[n].busy for n in WINDOWS) / 60,
        # patients still in at closing, finished as overtime; the day's last departure
        # (minutes from midnight)
        "overtime_patients": int((depart > day.sc.day.closing).sum()),
        "last_departure": float(depart.max()) if len(depart) else np.nan,
        "deferral": float(deferral.mean()) if len(deferral) else 0.0,
        "deferral_p90": float(np.percentile(deferral, 90)) if len(deferral) else 0.0,
    }
