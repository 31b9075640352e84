"""Runs started from the planners' page: a scenario with the planner's changes, simulated
in a background thread with its progress, its results written to a folder of its own."""

from __future__ import annotations

import threading
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.experiments.runner import run_replications
from twin.experiments.sensitivity import apply
from twin.report.plots import queues_over_day, waits_by_station
from twin.results.spreadsheets import write_table
from twin.scenario.schema import Scenario

SHOWN = ("time_saved", "visit_time", "visit_time_traditional", "visit_time_online",
         "wait_registration", "wait_payment", "wait_pharmacy", "wait_doctor",
         "wait_registration_p90", "wait_pharmacy_p90", "window_staff_hours")


@dataclass
class Run:
    id: str
    scenario: str
    changes: dict[str, Any]
    replications: int
    out: Path
    done: int = 0
    state: str = "running"  # running | finished | failed
    error: str = ""
    summary: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "scenario": self.scenario, "changes": self.changes,
                "replications": self.replications, "done": self.done, "state": self.state,
                "error": self.error, "summary": self.summary, "files": self.files}


class Runs:
    """The page's runs, each in a thread of its own (one process: a planner's machine)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: dict[str, Run] = {}
        self.lock = threading.Lock()

    def start(self, name: str, sc: Scenario, changes: dict[str, Any],
              replications: int) -> Run:
        variant = apply(sc, changes)  # a bad value is refused here, before the thread
        run = Run(uuid.uuid4().hex[:12], name, changes, replications,
                  self.root / uuid.uuid4().hex[:12])
        with self.lock:
            self.runs[run.id] = run
        threading.Thread(target=self._work, args=(run, variant), daemon=True).start()
        return run

    def _work(self, run: Run, sc: Scenario) -> None:
        try:
            def step(n: int) -> None:
                run.done += n

            res = run_replications(sc, run.replications, keep_patients=True, progress=step)
            run.out.mkdir(parents=True, exist_ok=True)
            summary = res.summary()
            write_table(summary, run.out / "summary.csv")
            write_table(res.kpis, run.out / "kpis.csv")
            waits_by_station({sc.name: res.kpis}, run.out / "waits.png")
            queues_over_day(res.queues, run.out / "queues.png", f"Queues over the day: {sc.name}")
            shown = summary[summary.kpi.isin(SHOWN)].sort_values(
                "kpi", key=lambda k: k.map(SHOWN.index))
            run.summary = [{k: (None if v != v else v) for k, v in row.items()}
                           for row in shown.to_dict(orient="records")]
            written = sorted(run.out.iterdir())
            with zipfile.ZipFile(run.out / "results.zip", "w", zipfile.ZIP_DEFLATED) as z:
                for path in written:
                    z.write(path, path.name)
            run.files = sorted(p.name for p in run.out.iterdir())
            run.state = "finished"
        except Exception as exc:  # shown on the page; the server goes on
            run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"
