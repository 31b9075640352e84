"""``ehc twin ui``: a page where a planner picks a hospital scenario, changes adoption,
staffing, opening hours or any assumption, runs it, and sees the comparison with its
intervals, the service levels and the plots, with a progress bar and a download of the
results. A page on FastAPI (the stack's own framework), not Streamlit: one dependency
less, and the same offline, scripted testing (real Chromium) as the H5 page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.scenario.schema import ScenarioError, load_scenario
from twin.ui.runs import Runs

PAGE = Path(__file__).with_name("page.html")


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scenario: str = Field(max_length=200)
    changes: dict[str, Any] = Field(default_factory=dict, max_length=50)
    replications: int = Field(3, ge=1, le=50)


def build_ui(scenarios: Path, results: Path) -> FastAPI:
    app = FastAPI(title="ehc-twin planners' page", docs_url=None, redoc_url=None)
    runs = Runs(results)
    known = {p.name: p for p in sorted(scenarios.glob("*.yaml"))}

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.get("/api/scenarios")
    def list_scenarios() -> list[dict[str, Any]]:
        out = []
        for name, path in known.items():
            sc = load_scenario(path)
            out.append({"file": name, "name": sc.name, "description": sc.description,
                        "adoption": sc.demand.adoption, "daily_visits": sc.demand.daily_visits,
                        "registration_windows": sc.resources.registration_windows,
                        "pharmacy_windows": sc.resources.pharmacy_windows,
                        "kiosks": sc.resources.kiosks})
        return out

    @app.post("/api/runs", status_code=202)
    def start(body: RunRequest) -> dict[str, Any]:
        if body.scenario not in known:
            raise HTTPException(422, f"no scenario {body.scenario!r}")
        try:
            run = runs.start(body.scenario, load_scenario(known[body.scenario]),
                             body.changes, body.replications)
        except (ValidationError, ValueError, KeyError, ScenarioError) as exc:
            message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise HTTPException(422, message.removeprefix("Value error, ")) from None
        return run.view()

    @app.get("/api/runs/{run_id}")
    def status(run_id: str) -> dict[str, Any]:
        run = runs.runs.get(run_id)
        if run is None:
            raise HTTPException(404, "no such run")
        return run.view()

    @app.get("/api/runs/{run_id}/files/{name}")
    def file(run_id: str, name: str) -> FileResponse:
        run = runs.runs.get(run_id)
        if run is None or name not in run.files:  # only what the run wrote
            raise HTTPException(404, "no such file")
        return FileResponse(run.out / name, filename=name)

    return app
