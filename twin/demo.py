"""The twin's part of ``make run``: the tertiary hospital before and after the fused card."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from twin.experiments.runner import paired_differences, run_replications
from twin.report.plots import queues_over_day, visit_time_ecdf, waits_by_station
from twin.scenario.schema import load_scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SHOWN = {
    "visit_time": "visit time", "wait_registration": "registration window wait",
    "wait_payment": "payment window wait", "wait_pharmacy": "pharmacy window wait",
    "wait_doctor": "wait for the doctor", "consult_median": "consultation (median)",
    "walks": "walks", "kiosk_uses": "kiosk uses / day", "window_busy_hours": "window busy hours",
}


def twin_demo(console: Console, replications: int = 3, workers: int = 2,
              out: Path = Path("results/twin/demo")) -> None:
    full = load_scenario(SCENARIOS / "tertiary_adoption_100.yaml")
    with Progress(console=console) as bar:
        task = bar.add_task(f"twin: {full.name} and the same people all-traditional",
                            total=replications)
        online = run_replications(full, replications, workers=workers,
                                  progress=partial(bar.advance, task))
    traditional = online.counterfactual()
    base = traditional.scenario
    runs = {base.name: traditional, full.name: online}
    diff = paired_differences(runs[base.name], runs[full.name]).set_index("kpi")
    table = Table(title=f"One tertiary hospital day ({base.demand.daily_visits:,} visits, "
                        "the same people in both flows): traditional vs 100 % fused card, "
                        f"{replications} paired replications")
    for c in ("KPI", "traditional", "online", "difference (95% CI)", "unit"):
        table.add_column(c, justify="left" if c in ("KPI", "unit") else "right")
    for key, label in SHOWN.items():
        r = diff.loc[key]
        table.add_row(label, f"{r.a:,.1f}", f"{r.b:,.1f}",
                      f"{r.difference:+,.1f} [{r.ci_low:+,.1f}, {r.ci_high:+,.1f}]", r.unit)
    console.print(table)
    shutil.rmtree(out, ignore_errors=True)  # this run's plots only
    out.mkdir(parents=True, exist_ok=True)
    waits_by_station({"traditional": runs[base.name].kpis, "100 % online": runs[full.name].kpis},
                     out / "waits.png")
    visit_time_ecdf({"traditional": runs[base.name].patients,
                     "100 % online": runs[full.name].patients}, out / "visit_time_ecdf.png")
    queues_over_day(runs[base.name].queues, out / "queues_traditional.png",
                    "Queues over the day: traditional flow")
    saved = diff.loc["visit_time"]
    console.print(f"[bold]Time saved per visit: {-saved.difference:.1f} min "
                  f"(95% CI {-saved.ci_high:.1f} to {-saved.ci_low:.1f}); the paper reports "
                  f"about 20 min.[/] Plots in {out}/")
