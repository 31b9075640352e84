"""Plots planners look at: waits per station with CIs, visit-time ECDFs, queues over the day."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .stats import t_interval

WAIT_KPIS = [("wait_registration", "registration\nwindow"), ("wait_payment", "payment\nwindow"),
             ("wait_pharmacy", "pharmacy\nwindow"), ("wait_doctor", "doctor\n(per visit)")]


def waits_by_station(runs: dict[str, pd.DataFrame], path: Path) -> Path:
    """Bars of mean waits with 95% CIs, one group per station, one bar per scenario."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(runs), 1)
    x = np.arange(len(WAIT_KPIS))
    for j, (label, kp) in enumerate(runs.items()):
        stats = [t_interval(kp[k].to_numpy(dtype=float)) for k, _ in WAIT_KPIS]
        means = [s[0] for s in stats]
        err = [[m - s[1] if not np.isnan(s[1]) else 0 for m, s in zip(means, stats, strict=True)],
               [s[2] - m if not np.isnan(s[2]) else 0 for m, s in zip(means, stats, strict=True)]]
        ax.bar(x + j * width, means, width, yerr=err, capsize=3, label=label)
    ax.axhline(10, color="grey", ls="--", lw=1, label="policy target (10 min)")
    ax.set_xticks(x + width * (len(runs) - 1) / 2, [n for _, n in WAIT_KPIS])
    ax.set_ylabel("mean wait (min), 95% CI")
    ax.set_title("Waits per station")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def visit_time_ecdf(patients: dict[str, pd.DataFrame], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, df in patients.items():
        v = np.sort(df["visit_time"].to_numpy(dtype=float))
        if v.size:
            ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", label=label)
    ax.set_xlabel("visit time, arrival to departure (min)")
    ax.set_ylabel("share of visits (ECDF)")
    ax.set_title("Distribution of visit times")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def queues_over_day(queues: pd.DataFrame, path: Path, title: str) -> Path:
    """Mean queue length over replications, by station, against clock time."""
    stations = ["registration window", "kiosk", "payment window", "pharmacy window", "lab",
                "imaging"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name in stations:
        q = queues[queues.station == name].groupby("time")["queue_length"].mean()
        if len(q) and q.max() > 0:
            ax.plot(q.index / 60, q.to_numpy(), label=name)
    ax.set_xlabel("clock time (h)")
    ax.set_ylabel("patients waiting (mean over replications)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
