"""Plots planners look at: waits per station with CIs, visit-time ECDFs, queues over the day."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from twin.results.stats import kpi_interval

WAIT_KPIS = [("wait_registration", "registration\nwindow"), ("wait_payment", "payment\nwindow"),
             ("wait_pharmacy", "pharmacy\nwindow"), ("wait_doctor", "doctor\n(per visit)")]


# one colour per flow in every plot (colour-blind safe, Okabe-Ito)
FLOW_COLOURS = {"traditional": "#E69F00", "online": "#0072B2"}


def flow_colour(label: str) -> str | None:
    """The flow's colour for a series named after it ("traditional", "100 % online",
    "Online"...), or None (the default cycle) for anything else."""
    low = label.lower()
    for flow, colour in FLOW_COLOURS.items():
        if flow in low:
            return colour
    return None


def _save(fig, path: Path) -> Path:
    """Lay out, save at the plots' resolution, close."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _finish(fig, ax, path: Path, title: str, legend_size: int | None = None) -> Path:
    """Title, grid, legend, save, close: the same last lines of every plot."""
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    return _save(fig, path)


def waits_by_station(runs: dict[str, pd.DataFrame], path: Path) -> Path:
    """Bars of mean waits with 95% CIs, one group per station, one bar per scenario."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(len(runs), 1)
    x = np.arange(len(WAIT_KPIS))
    for j, (label, kp) in enumerate(runs.items()):
        stats = [kpi_interval(kp[k].to_numpy(dtype=float)) for k, _ in WAIT_KPIS]
        means = [s[0] for s in stats]
        err = [[m - s[1] if not np.isnan(s[1]) else 0 for m, s in zip(means, stats, strict=True)],
               [s[2] - m if not np.isnan(s[2]) else 0 for m, s in zip(means, stats, strict=True)]]
        ax.bar(x + j * width, means, width, yerr=err, capsize=3, label=label,
               color=flow_colour(label))
    ax.axhline(10, color="grey", ls="--", lw=1, label="policy target (10 min)")
    ax.set_xticks(x + width * (len(runs) - 1) / 2, [n for _, n in WAIT_KPIS])
    ax.set_ylabel("mean wait (min), 95% CI")
    return _finish(fig, ax, path, "Waits per station")


def visit_time_ecdf(patients: dict[str, pd.DataFrame], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, df in patients.items():
        v = np.sort(df["visit_time"].to_numpy(dtype=float))
        if v.size:
            ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", label=label,
                    color=flow_colour(label))
    ax.set_xlabel("visit time, arrival to departure (min)")
    ax.set_ylabel("share of visits (ECDF)")
    return _finish(fig, ax, path, "Distribution of visit times")


def queue_series(queues: pd.DataFrame) -> dict[str, pd.Series]:
    """Mean queue length over replications by clock time (min), per station, and every
    department's consulting rooms together (the longest wait of the day); stations
    nobody waited at are left out."""
    stations = ["registration window", "kiosk", "payment window", "pharmacy window", "lab",
                "imaging"]
    series = {name: queues[queues.station == name] for name in stations}
    series["doctors (all departments)"] = queues[queues.station.str.startswith("doctors: ")]
    out = {}
    for name, rows in series.items():
        # replications start their samples at their own first arrival: put every sample
        # on one 5-minute grid before averaging over replications
        rows = rows.assign(time=rows.time // 5 * 5)
        by = ["replication", "time"] if "replication" in rows else ["time"]
        q = rows.groupby(by)["queue_length"].sum()
        if "replication" in rows:
            q = q.groupby("time").mean()
        if len(q) and q.max() > 0:
            out[name] = q
    return out


def queues_over_day(queues: pd.DataFrame, path: Path, title: str) -> Path:
    """Mean queue length over replications, by station, against clock time."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for name, q in queue_series(queues).items():
        ax.plot(q.index / 60, q.to_numpy(), label=name)
    ax.set_xlabel("clock time (h)")
    ax.set_ylabel("patients waiting (mean over replications)")
    return _finish(fig, ax, path, title, 8)


def city_savings(cities: pd.DataFrame, paper_minutes: float, path: Path) -> Path:
    """Minutes saved per visit by city with 95% CIs, the province, and the paper's figure."""
    fig, ax = plt.subplots(figsize=(10, 4.8))
    x = np.arange(len(cities))
    mean = cities.minutes_saved_per_visit.to_numpy(float)
    lo = np.nan_to_num(mean - cities.ci_low.to_numpy(float))
    hi = np.nan_to_num(cities.ci_high.to_numpy(float) - mean)
    colors = ["tab:blue"] * (len(cities) - 1) + ["tab:orange"]
    ax.bar(x, mean, yerr=[lo, hi], capsize=3, color=colors)
    ax.axhline(paper_minutes, color="grey", ls="--", lw=1,
               label=f"paper: about {paper_minutes:g} min")
    ax.set_xticks(x, cities.city, rotation=30, ha="right")
    ax.set_ylabel("minutes saved per visit (95% CI)")
    return _finish(fig, ax, path, "Time saved per outpatient visit, by city")


def demand_curve(frame: pd.DataFrame, path: Path, title: str) -> Path:
    """Card-network calls per second over the day (per-second counts and a 1-min mean)."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    hours = frame.second / 3600
    for kind, color, style in (("verify", "tab:blue", "-"), ("refresh", "tab:green", "--"),
                               ("settlement", "tab:orange", "-"), ("payment", "tab:red", ":"),
                               ("kiosk", "tab:purple", "-."),
                               ("retail", "tab:brown", (0, (1, 1)))):
        if kind not in frame:
            continue  # a curve written before the kind existed
        smooth = frame[kind].rolling(60, center=True, min_periods=1).mean()
        ax.plot(hours, smooth, color=color, ls=style, label=f"{kind} (1-min mean)")
    ax.plot(hours, frame["verify"], color="tab:blue", alpha=0.25, lw=0.5,
            label="verify (per second)")
    ax.set_xlim(6, 22)
    ax.set_xlabel("clock time (h)")
    ax.set_ylabel("calls per second")
    return _finish(fig, ax, path, title, 8)


def sweep_plot(df: pd.DataFrame, path: Path) -> Path:
    """Time saved and window queues against adoption, one line per kiosk count."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for kiosks, g in df.groupby("kiosks"):
        g = g.sort_values("adoption")
        a1.errorbar(g.adoption * 100, g.time_saved, yerr=[g.time_saved - g.time_saved_low,
                    g.time_saved_high - g.time_saved], capsize=3, marker="o",
                    label=f"{kiosks} kiosks")
        a2.plot(g.adoption * 100, g.wait_registration, marker="o",
                label=f"registration, {kiosks} kiosks")
        a2.plot(g.adoption * 100, g.wait_pharmacy, marker="s", ls="--",
                label=f"pharmacy, {kiosks} kiosks")
    a1.set_xlabel("adoption of the fused-card online flow (%)")
    a1.set_ylabel("minutes saved per visit (95% CI)")
    a1.set_title("Time saved against adoption")
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    a2.axhline(10, color="grey", ls="--", lw=1)
    a2.set_xlabel("adoption of the fused-card online flow (%)")
    a2.set_ylabel("mean queue wait per use (min)")
    a2.set_title("Window queues against adoption")
    a2.grid(alpha=0.3)
    a2.legend(fontsize=7)
    return _save(fig, path)


PHASES = [  # (label, steps counted, part: "wait" or "service")
    ("registration queue", ("registration", "checkin"), "wait"),
    ("registration / check-in", ("registration", "checkin"), "service"),
    ("doctor queue", ("doctor", "revisit"), "wait"),
    ("consultation", ("doctor", "revisit"), "service"),
    ("payment queue", ("payment",), "wait"),
    ("payment", ("payment",), "service"),
    ("lab / imaging", ("lab", "imaging"), "both"),
    ("report printing", ("report",), "both"),
    ("pharmacy queue", ("pharmacy",), "wait"),
    ("dispensing", ("pharmacy",), "service"),
]


def journey_phases(patients: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Mean minutes per visit in each phase of the journey, by flow; what is left of the
    visit time is walking, waiting for results, paying on the phone and early arrival."""
    rows = []
    for flow, pts in patients.groupby("flow"):
        keys = set(zip(pts.replication, pts.patient, strict=True))
        st = steps[[k in keys for k in zip(steps.replication, steps.patient, strict=True)]]
        n = len(pts)
        row = {"flow": flow}
        used = 0.0
        for label, names, part in PHASES:
            sel = st[st.step.isin(names)]
            minutes = {"wait": sel.wait.sum(), "service": sel.service.sum(),
                       "both": sel.wait.sum() + sel.service.sum()}[part] / n
            row[label] = minutes
            used += minutes
        visit = float(pts.visit_time.mean())
        # the slot wait of appointment patients is in wait_doctor, not in a queue step
        slot_wait = float(pts.wait_doctor.mean()) - row["doctor queue"]
        row["doctor queue"] += max(slot_wait, 0.0)
        used += max(slot_wait, 0.0)
        row["walking, results, phone"] = max(visit - used, 0.0)
        row["visit time"] = visit
        rows.append(row)
    return pd.DataFrame(rows).set_index("flow")


def journey(phases: pd.DataFrame, path: Path) -> Path:
    """The patient journey before and after, as the paper's figure 3 tells it: where the
    minutes of a visit go, traditional against online."""
    cols = [c for c in phases.columns if c != "visit time"]
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(11, 3.6))
    for y, (_flow, row) in enumerate(phases.iterrows()):
        left = 0.0
        for i, c in enumerate(cols):
            w = row[c]
            ax.barh(y, w, left=left, color=cmap(i), label=c if y == 0 else None,
                    edgecolor="white")
            if w >= 4:
                ax.text(left + w / 2, y, f"{w:.0f}", ha="center", va="center", fontsize=7)
            left += w
        ax.text(left + 1, y, f"{row['visit time']:.0f} min", va="center", fontsize=9)
    ax.set_yticks(range(len(phases)), [f.title() for f in phases.index])
    ax.set_xlabel("minutes of an average visit")
    ax.set_title('The patient journey: the "three longs, one short" before and after')
    ax.legend(ncol=4, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def tornado(df: pd.DataFrame, path: Path, title: str) -> Path:
    """Each assumption's low and high end as bars around the base saving, largest swing
    on top."""
    d = df.iloc[::-1]
    base = float(df.saved_base.iloc[0]) if len(df) else 0.0
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(d) + 1.6))
    y = range(len(d))
    ax.barh(y, d.saved_low - base, left=base, color="tab:blue", alpha=0.8,
            label="assumption at its low end")
    ax.barh(y, d.saved_high - base, left=base, color="tab:orange", alpha=0.8,
            label="assumption at its high end")
    ax.set_yticks(list(y), [f"{a} [{lo} … {hi}]" for a, lo, hi in
                            zip(d.assumption, d.low, d.high, strict=True)], fontsize=8)
    ax.axvline(base, color="black", lw=1)
    ax.set_xlabel("minutes saved per shown visit")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def saving_spread(df: pd.DataFrame, path: Path, title: str,
                  band: tuple[float, float, float]) -> Path:
    """The saving of each Latin-hypercube sample, with its median and central 95 %."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.hist(df.saved, bins=max(5, min(30, len(df) // 2)), color="tab:green", alpha=0.75)
    median, low, high = band
    ax.axvline(median, color="black", lw=1.5, label=f"median {median:.1f} min")
    ax.axvspan(low, high, color="grey", alpha=0.15, label=f"95 % {low:.1f}–{high:.1f} min")
    ax.set_xlabel("minutes saved per shown visit (each sample: every assumption drawn "
                  "in its range)")
    ax.set_ylabel("samples")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def paired_differences_plot(diff: pd.DataFrame, path: Path, title: str) -> Path:
    """B - A per KPI with its paired 95 % CI (the comparison itself, not each scenario's
    own interval): minutes of waiting and visit time."""
    keys = ["visit_time", "wait_registration", "wait_payment", "wait_pharmacy", "wait_doctor",
            "doctor_time"]
    rows = diff.set_index("kpi").reindex([k for k in keys if k in set(diff.kpi)])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    y = np.arange(len(rows))
    err = [(rows.difference - rows.ci_low).fillna(0), (rows.ci_high - rows.difference).fillna(0)]
    colours = ["#009E73" if d < 0 else "#D55E00" for d in rows.difference]
    ax.barh(y, rows.difference, xerr=err, capsize=3, color=colours)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, [k.replace("_", " ") for k in rows.index])
    ax.invert_yaxis()
    ax.set_xlabel("B - A (min), paired 95 % CI; below 0: B is shorter")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)


KPI_TITLES = {"time_saved": "minutes saved per visit", "visit_time": "visit time (min)",
              "wait_registration": "registration window wait (min)",
              "wait_payment": "payment window wait (min)",
              "wait_pharmacy": "pharmacy window wait (min)",
              "wait_doctor": "wait for the doctor (min)",
              "window_staff_hours": "window staff hours a day"}


def grid_plots(df: pd.DataFrame, keys: list[str], out: Path) -> list[Path]:
    """One plot per KPI of a what-if grid: the KPI with its 95 % CI against the first
    key's values, one line per combination of the other keys."""
    first, rest = keys[0], keys[1:]
    labels = [str(v) for v in dict.fromkeys(df[first])]
    x = {v: i for i, v in enumerate(labels)}
    paths = []
    for kpi, title in KPI_TITLES.items():
        if kpi not in df:
            continue
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        groups = df.groupby(rest, sort=False) if rest else [((), df)]
        for name, g in groups:
            name = name if isinstance(name, tuple) else (name,)
            xs = [x[str(v)] for v in g[first]]
            low = (g[kpi] - g[f"{kpi}_low"]).fillna(0)
            high = (g[f"{kpi}_high"] - g[kpi]).fillna(0)
            label = ", ".join(f"{k} = {v}" for k, v in zip(rest, name, strict=True)) or kpi
            ax.errorbar(xs, g[kpi], yerr=[low, high], capsize=3, marker="o", label=label)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel(first)
        ax.set_ylabel(f"{title}, 95 % CI")
        if kpi.startswith("wait_"):
            ax.axhline(10, color="grey", ls="--", lw=1)
        paths.append(_finish(fig, ax, out / f"sweep_{kpi}.png", title.capitalize(), 8))
    return paths


def rollout_plot(df: pd.DataFrame, path: Path, title: str) -> Path:
    """The roll-out path, month by month: minutes saved per visit (95 % CI), days saved a
    year, windows and kiosks needed under the month's adoption, the busiest second."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    (a1, a2), (a3, a4) = axes
    m = df.month
    a1.errorbar(m, df.minutes_saved_per_visit, capsize=3, marker="o",
                yerr=[(df.minutes_saved_per_visit - df.ci_low).fillna(0),
                      (df.ci_high - df.minutes_saved_per_visit).fillna(0)],
                color=FLOW_COLOURS["online"])
    a1.set_ylabel("minutes saved per visit (95 % CI)")
    a1b = a1.twinx()
    a1b.plot(m, df.adoption * 100, color="grey", ls=":", label="visits with the card (%)")
    a1b.set_ylabel("visits with the card (%)", color="grey")
    a2.plot(m, df.days_saved_per_year / 1e6, marker="o", color=FLOW_COLOURS["online"])
    a2.set_ylabel("days saved a year (millions)")
    for col, style, mark in (("windows", "-", "o"), ("kiosks", "--", "s")):
        a3.plot(m, df[f"{col}_needed_traditional"], ls=style, marker=mark,
                color=FLOW_COLOURS["traditional"], label=f"{col}, all traditional")
        a3.plot(m, df[f"{col}_needed_scenario"], ls=style, marker=mark,
                color=FLOW_COLOURS["online"], label=f"{col}, the month's adoption")
    a3.set_ylabel("needed (busy hours at target utilisation)")
    a3.legend(fontsize=8)
    a4.plot(m, df.verify_peak_per_s, marker="o", label="QR verifications")
    a4.plot(m, df.calls_peak_per_s, marker="s", label="all card-network calls")
    a4.set_ylabel("busiest second (calls/s)")
    a4.legend(fontsize=8)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    for ax in (a3, a4):
        ax.set_xlabel("month of the roll-out")
    fig.suptitle(title)
    return _save(fig, path)


def schedule_plot(schedule: pd.DataFrame, path: Path, title: str) -> Path:
    """The optimiser's servers per hour beside today's, one panel per station."""
    stations = list(dict.fromkeys(schedule.station))
    fig, axes = plt.subplots(len(stations), 1, figsize=(8, 2.2 * len(stations) + 0.6),
                             sharex=True, squeeze=False)
    for ax, station in zip(axes[:, 0], stations, strict=True):
        g = schedule[schedule.station == station].sort_values("hour")
        g = pd.concat([g, g.tail(1).assign(hour=g.hour.max() + 1)])  # the last hour's end
        ax.step(g.hour, g.current, where="post", color=FLOW_COLOURS["traditional"],
                label="today's staffing")
        ax.step(g.hour, g.servers, where="post", color=FLOW_COLOURS["online"], lw=2,
                label="fewest meeting the target")
        ax.set_ylabel(f"{station}\n(servers)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    axes[-1, 0].set_xlabel("hour of the day (each hour's servers from its start)")
    axes[0, 0].set_title(title)
    return _save(fig, path)
