"""Statistics on screen that never mislead: intervals of quantities that cannot be
negative stay at or above 0, one colour per flow in every plot, the doctors' queues in
the queue plot, and compare's picture of the paired difference itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.experiments.runner import run_replications
from twin.report.plots import FLOW_COLOURS, flow_colour, queue_series
from twin.results.stats import kpi_interval, t_interval
from twin.scenario.schema import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "scenarios" / "small_clinic.yaml"


def test_a_wait_interval_never_reaches_below_zero() -> None:
    waits = [0.1, 0.2, 3.0]
    assert t_interval(waits)[1] < 0  # what the t interval would have printed
    mean, low, high, method = kpi_interval(waits)
    assert method == "bootstrap" and 0 <= low <= mean <= high <= max(waits)
    assert kpi_interval([5.0, 5.2, 5.1])[3] == "t"  # a tight one keeps the t interval
    assert kpi_interval([-1.0, 2.0, 8.0])[3] == "t"  # a signed quantity is left alone


def test_a_share_interval_never_reaches_above_one() -> None:
    """'within target 0.98 (0.88 to 1.07)' was printed for a share of three days."""
    shares = [1.0, 1.0, 0.94]
    assert t_interval(shares)[2] > 1
    mean, low, high, method = kpi_interval(shares, upper=1.0)
    assert method == "bootstrap" and min(shares) <= low <= mean <= high <= 1.0
    assert kpi_interval([0.5, 0.52, 0.51], upper=1.0)[3] == "t"
    assert kpi_interval(shares)[3] == "t"  # unbounded above unless said
    res = run_replications(load_scenario(SMALL), 3, keep_patients=False)
    summary = res.summary().set_index("kpi")
    shares_rows = summary[summary.unit == "share"]
    assert len(shares_rows) >= 3 and (shares_rows.ci_high <= 1).all(), shares_rows


def test_the_run_summary_marks_its_bootstrap_intervals() -> None:
    res = run_replications(load_scenario(SMALL), 2, keep_patients=False)
    summary = res.summary().set_index("kpi")
    signed = summary.loc["time_saved"]
    assert signed.interval == "t"
    rest = summary.drop(index="time_saved")
    assert (rest.ci_low.dropna() >= 0).all(), rest[rest.ci_low < 0]


def test_one_colour_per_flow() -> None:
    assert flow_colour("traditional") == flow_colour("Traditional") == flow_colour(
        "A traditional day") == FLOW_COLOURS["traditional"]
    assert flow_colour("100 % online") == flow_colour("Online") == FLOW_COLOURS["online"]
    assert flow_colour("A tertiary_baseline") is None


def test_the_queue_plot_shows_the_doctors_on_one_grid() -> None:
    res = run_replications(load_scenario(SMALL), 2, keep_patients=False)
    series = queue_series(res.queues)
    assert "doctors (all departments)" in series
    doctors = series["doctors (all departments)"]
    assert (np.asarray(doctors.index) % 5 == 0).all()
    raw = res.queues[res.queues.station.str.startswith("doctors: ")]
    assert doctors.max() <= raw.groupby(["replication", "time"]).queue_length.sum().max()


def test_compare_draws_the_paired_difference(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "compare", str(SMALL),
                          str(ROOT / "scenarios" / "small_clinic_outage.yaml"), "-r", "2",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "do not see the same patients" not in res.stderr  # the outage day's are
    assert (tmp_path / "paired_differences.png").stat().st_size > 10_000
    diff = pd.read_csv(tmp_path / "paired_differences.csv")
    assert {"difference", "ci_low", "ci_high"} <= set(diff.columns)


def test_compare_says_when_the_two_scenarios_see_different_patients() -> None:
    from twin.experiments.runner import same_people

    scenarios = ROOT / "scenarios"
    tertiary = load_scenario(scenarios / "tertiary_baseline.yaml")
    assert same_people(tertiary, load_scenario(scenarios / "tertiary_adoption_60.yaml"))
    assert same_people(load_scenario(SMALL), load_scenario(scenarios / "small_clinic_outage.yaml"))
    assert not same_people(tertiary, load_scenario(scenarios / "secondary_baseline.yaml"))
    busier = tertiary.model_copy(update={"demand": tertiary.demand.model_copy(
        update={"daily_visits": 13000})})
    assert not same_people(tertiary, busier)


@pytest.mark.parametrize("reps,advice", [(2, "-r "), (30, "within ±5 %")])
def test_the_replications_advice_is_a_command(tmp_path: Path, reps: int, advice: str) -> None:
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "run", str(SMALL), "-r",
                          str(reps), "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert advice in res.stdout.replace("\n", " ")
    if advice == "-r ":
        assert f"ehc twin run {SMALL} -r" in res.stdout.replace("\n", "")


def test_summary_tables_also_as_spreadsheets_with_units(tmp_path: Path) -> None:
    import openpyxl

    from twin.results.spreadsheets import unit_of

    assert unit_of("wait_registration") == "min" and unit_of("adoption") == "share"
    assert unit_of("days_saved_per_year") == "a year" and unit_of("verify_peak_per_s") == "/s"
    res = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "run", str(SMALL), "-r", "2",
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    for name in ("summary", "kpis", "stations", "staffing"):
        book = openpyxl.load_workbook(tmp_path / f"{name}.xlsx", read_only=True)
        sheet = book.active
        header = [c.value for c in next(sheet.iter_rows(max_row=1))]
        csv = pd.read_csv(tmp_path / f"{name}.csv")
        assert len(header) == len(csv.columns) and sheet.max_row == len(csv) + 1, name
        assert any(str(h).endswith("(min)") for h in header), (name, header)
