"""Back-tests: the twin's KPIs for a fixed scenario and seed against results stored in
``tests/data/backtest`` (pydesrap's test_backtest). A change of the model that moves any
KPI of any replication fails here; when a change is meant to move them, regenerate the
stored files with the command in each case's docstring and say why in the commit."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from twin.experiments.runner import run_replications
from twin.scenario.schema import load_scenario

ROOT = Path(__file__).resolve().parents[2]
STORED = ROOT / "tests" / "data" / "backtest"

CASES = [
    # ehc twin run scenarios/small_clinic.yaml -r 3 --seed 7 (kpis.csv)
    ("small_clinic.yaml", 7, 3, "small_clinic_seed7_r3_kpis.csv"),
    # ehc twin run scenarios/tertiary_adoption_60.yaml -r 2 --seed 3 (kpis.csv)
    ("tertiary_adoption_60.yaml", 3, 2, "tertiary_adoption_60_seed3_r2_kpis.csv"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "seed", "reps", "stored"), CASES)
def test_kpis_match_the_stored_results(scenario: str, seed: int, reps: int,
                                       stored: str) -> None:
    expected = pd.read_csv(STORED / stored)
    res = run_replications(load_scenario(ROOT / "scenarios" / scenario), reps, seed=seed,
                           keep_patients=True)
    got = res.kpis.reset_index(drop=True)[list(expected.columns)]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-9)
