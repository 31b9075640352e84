"""Any what-if: a sweep over scenario keys other than adoption, on the same patients,
with tidy output and a plot per KPI; bad keys and values refused before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from twin.experiments.sweep import combinations, run_grid
from twin.scenario.schema import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "scenarios" / "small_clinic.yaml"


def test_combinations_are_the_full_grid_in_order() -> None:
    grid = combinations({"a": [1, 2], "b": ["x", "y", "z"]})
    assert len(grid) == 6 and grid[0] == {"a": 1, "b": "x"} and grid[-1] == {"a": 2, "b": "z"}


def test_more_windows_never_lengthen_the_queue_on_the_same_patients() -> None:
    sc = load_scenario(SMALL)
    df = run_grid(sc, {"resources.registration_windows": [1, 2, 4]}, 2)
    waits = df.wait_registration.to_list()
    assert waits[0] > waits[1] >= waits[2] - 1e-9  # common random numbers: monotone
    staff = df.window_staff_hours.to_list()
    assert staff[0] < staff[1] < staff[2]
    assert (df.wait_registration_low >= 0).all()


def test_the_cli_sweeps_any_key_with_tidy_output_and_plots(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "sweep", str(SMALL),
                          "--set", "online.slot_length=15 min,60 min",
                          "--set", "demand.adoption=40%,80%", "-r", "2", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    wide = pd.read_csv(tmp_path / "sweep.csv")
    assert len(wide) == 4 and {"online.slot_length", "adoption"} <= set(wide.columns)
    long = pd.read_csv(tmp_path / "sweep_long.csv")
    assert len(long) == 4 * long.kpi.nunique() and "time_saved" in set(long.kpi)
    for kpi in ("time_saved", "visit_time", "wait_doctor"):
        assert (tmp_path / f"sweep_{kpi}.png").stat().st_size > 10_000
    for bad, said in ((["--set", "resources.nope=1,2"], "no scenario key"),
                      (["--set", "nosuch.section=1"], "no scenario key 'nosuch.section'"),
                      (["--set", "demand.adoption.x=1"], "no scenario key"),
                      (["--set", "online.slot_length=30"], "needs a unit"),
                      (["--set", "resources.kiosks"], "KEY=V1,V2")):
        refused = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "sweep", str(SMALL),
                                  *bad, "--out", str(tmp_path / "never")], capture_output=True,
                                 text=True, timeout=120)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
        assert not (tmp_path / "never").exists()  # refused before anything ran or was written
