"""The register of assumptions and the one-at-a-time sensitivity of the saving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from twin.experiments.sensitivity import one_at_a_time
from twin.scenario.assumptions import ASSUMPTIONS, Assumption, with_value
from twin.scenario.schema import Scenario, ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
SMALL = load_scenario(ROOT / "scenarios" / "small_clinic.yaml")


@pytest.mark.parametrize("a", ASSUMPTIONS, ids=lambda a: a.key)
def test_every_assumption_is_a_scenario_key_valid_at_both_ends(a: Assumption) -> None:
    def value(sc: Scenario) -> Any:
        node = sc
        for part in a.key.split("."):
            node = getattr(node, part)
        return node

    low, high = value(with_value(SMALL, a.key, a.low)), value(with_value(SMALL, a.key, a.high))
    assert low < high  # each range runs from a low end to a high end


def test_values_are_validated_like_a_scenario_file() -> None:
    assert with_value(SMALL, "online.slot_length", "1 h").online.slot_length == 60.0
    with pytest.raises(ValueError, match="unit"):
        with_value(SMALL, "online.slot_length", 20)
    with pytest.raises(KeyError, match=r"online\.nonsense"):
        with_value(SMALL, "online.nonsense", 1)
    assert SMALL.online.slot_length == 30.0  # the original is left alone


def test_one_at_a_time_swings_and_orders_by_weight() -> None:
    picked = tuple(a for a in ASSUMPTIONS if a.key in ("online.prepaid_dispense_factor",
                                                        "online.no_show_share"))
    df = one_at_a_time(SMALL, 2, assumptions=picked)
    assert list(df.columns[:4]) == ["assumption", "low", "high", "why"]
    assert df.swing.abs().is_monotonic_decreasing
    row = df.set_index("assumption").loc["online.prepaid_dispense_factor"]
    # faster dispensing for prepaid prescriptions can only add to the saving
    assert row.saved_low >= row.saved_high


def test_cli_writes_table_and_plot(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "sensitivity",
                          str(ROOT / "scenarios" / "small_clinic.yaml"), "-r", "2", "--out",
                          str(tmp_path), "--lhs", "4"], capture_output=True, text=True,
                         timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    df = pd.read_csv(tmp_path / "sensitivity.csv")
    assert set(df.assumption) == {a.key for a in ASSUMPTIONS}
    assert (tmp_path / "tornado.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "lhs.csv")) == 4 and "95 %" in run.stdout
    assert (tmp_path / "lhs.png").stat().st_size > 10_000
    base = subprocess.run([sys.executable, "-m", "twin.cli", "twin", "sensitivity",
                           str(ROOT / "scenarios" / "tertiary_baseline.yaml")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert base.returncode == 2 and "adoption 0" in base.stderr


def test_a_bad_value_in_a_scenario_is_still_a_scenario_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"extends: {ROOT / 'scenarios' / 'small_clinic.yaml'}\nname: bad\n"
                   "online: {slot_length: 30}\n")
    with pytest.raises(ScenarioError, match="slot_length"):
        load_scenario(bad)


def test_latin_hypercube_draws_every_assumption_in_its_range() -> None:
    """Each sample sets every assumption inside its range; each assumption's samples
    fall one per stratum (a Latin hypercube); the interval brackets the median."""
    from twin.experiments.sensitivity import _between, interval, probabilistic

    assert _between("15 min", "60 min", 0.5) == "37.5 min"
    assert _between("16:30", "18:00", 0.5) == "17:15"
    assert _between(1, 4, 0.5) in (2, 3) and isinstance(_between(1, 4, 0.5), int)
    samples = probabilistic(SMALL, 6, 1)
    assert len(samples) == 6 and samples.saved.notna().all()
    for a in ASSUMPTIONS:
        if isinstance(a.low, str):
            continue
        values = samples[a.key].astype(float)
        assert values.between(float(a.low), float(a.high)).all(), a.key
        if isinstance(a.low, float):  # continuous: one sample per sixth of the range
            strata = ((values - a.low) / (a.high - a.low) * 6).astype(int).clip(0, 5)
            assert sorted(strata) == list(range(6)), a.key
    median, low, high = interval(samples)
    assert low <= median <= high
