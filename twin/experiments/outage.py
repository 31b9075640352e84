"""What an outage of the card network does to a hospital day: the same day (same seeds)
with the scenario's faults and without, queue lengths at every station over the day,
the blow-up and the recovery time after each fault, and the extra minutes per visit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from twin.experiments.paired import counterfactual_day
from twin.model.day import HospitalDay
from twin.results.kpis import kpis, queue_frame
from twin.results.stats import t_interval
from twin.scenario.schema import Scenario

RECOVERED_WITHIN = 2.0  # patients: a queue is back when within this (or 10 %) of no-fault
STEADY_SAMPLES = 3  # ... for this many samples in a row


def paired_days(sc: Scenario, replications: int) -> dict[str, Any]:
    """Per replication, the day with its faults and without (common random numbers)."""
    queues, rows, fallbacks = [], [], []
    for r in range(replications):
        hit = HospitalDay(sc, r, keep_steps=False).run()
        base = counterfactual_day(sc, r, against="no fault")
        for label, day in (("outage", hit), ("no fault", base)):
            queues.append(queue_frame(day).assign(replication=r, run=label))
        rows.append({"replication": r, "visit_time_outage": kpis(hit)["visit_time"],
                     "visit_time_no_fault": kpis(base)["visit_time"]})
        fallbacks.append(hit.fallbacks)
    return {"queues": pd.concat(queues, ignore_index=True), "kpis": pd.DataFrame(rows),
            "fallbacks": pd.DataFrame(fallbacks)}


def recovery(q_hit: pd.Series, q_base: pd.Series, end: float) -> float | None:
    """Minutes after ``end`` until the queue stays back near the no-fault day's."""
    after = q_hit.index[q_hit.index >= end]
    run = 0
    for i, t in enumerate(after):
        near = abs(q_hit[t] - q_base.get(t, 0.0)) <= max(RECOVERED_WITHIN,
                                                          0.1 * q_base.get(t, 0.0))
        run = run + 1 if near else 0
        if run == STEADY_SAMPLES:
            return float(after[i - STEADY_SAMPLES + 1] - end)
    return None


BIN_MIN = 5.0  # replications sample their queues from their own first arrival: binned
WINDOWS = ("registration window", "payment window", "pharmacy window", "check-in scanner")


def mean_queues(paired: dict[str, Any]) -> pd.Series:
    """Mean queue length over replications on a common 5-minute grid, by run and station."""
    df = paired["queues"].assign(time=lambda d: (d.time // BIN_MIN) * BIN_MIN)
    per_rep = df.groupby(["run", "station", "replication", "time"])["queue_length"].mean()
    return per_rep.groupby(["run", "station", "time"]).mean()


def summarise(sc: Scenario, paired: dict[str, Any]) -> dict[str, Any]:
    q = mean_queues(paired)
    stations = sorted(paired["queues"].station.unique())
    diff = paired["kpis"].visit_time_outage - paired["kpis"].visit_time_no_fault
    mean, lo, hi = t_interval(diff.to_numpy(float))
    faults = []
    for f in sc.faults:
        per_station = {}
        for name in stations:
            hit, base = q["outage"][name], q["no fault"][name]
            window = (hit.index >= f.start) & (hit.index < f.end + 120)
            peak_hit = float(hit[window].max()) if window.any() else 0.0
            peak_base = float(base[window].max()) if window.any() else 0.0
            if peak_hit - peak_base < 2:
                continue
            per_station[name] = {"peak_queue": peak_hit, "peak_queue_no_fault": peak_base,
                                 "recovery_min": recovery(hit, base, f.end)}
        faults.append({"target": f.target, "mode": f.mode,
                       "from": _clock(f.start), "to": _clock(f.end), "stations": per_station})
    return {"scenario": sc.name, "replications": len(paired["kpis"]),
            "extra_minutes_per_visit": {"mean": mean, "ci_low": lo, "ci_high": hi},
            "fallbacks_per_day": {k: float(v) for k, v in paired["fallbacks"].mean().items()},
            "faults": faults}


def plot(sc: Scenario, paired: dict[str, Any], path: Path) -> Path:
    q = mean_queues(paired)
    others = [name for name in sorted(paired["queues"].station.unique()) if name not in WINDOWS
              and (q["outage"][name] - q["no fault"][name]).abs().max() >= 3]
    names = [n for n in (*WINDOWS, *others) if n in q["outage"].index.get_level_values(0)
             and max(q["outage"][n].max(), q["no fault"][n].max()) > 0]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 2.3 * len(names) + 0.6),
                             sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        for run, style in (("no fault", {"color": "tab:gray", "ls": "--"}),
                           ("outage", {"color": "tab:red"})):
            s = q[run][name]
            ax.plot(s.index / 60, s.to_numpy(), label=run, **style)
        for f in sc.faults:
            ax.axvspan(f.start / 60, f.end / 60, color="tab:orange", alpha=0.15,
                       label=f"{f.target} {f.mode}")
        ax.set_ylabel("waiting")
        ax.set_title(name, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("clock time (h)")
    fig.suptitle(f"Queues with and without the outage: {sc.name} "
                 f"(mean of {len(paired['kpis'])} replications)")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _clock(minutes: float) -> str:
    return f"{int(minutes // 60):02d}:{int(minutes % 60):02d}"


def outage_report(sc: Scenario, replications: int, out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    paired = paired_days(sc, replications)
    summary = summarise(sc, paired)
    summary["plot"] = str(plot(sc, paired, out / "outage.png"))
    paired["queues"].to_csv(out / "outage_queues.csv", index=False)
    (out / "outage.json").write_text(pd.Series(summary).to_json(indent=1))
    return summary
