"""One-at-a-time sensitivity of the saving to each registered assumption: the scenario
with the assumption at its low end and at its high end, each run over the same
replications and seeds as the scenario itself (common random numbers), so that the swing
is the assumption's doing."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from twin.experiments.runner import run_replications
from twin.results.stats import t_interval
from twin.scenario.assumptions import ASSUMPTIONS, Assumption, with_value
from twin.scenario.schema import Scenario


def one_at_a_time(sc: Scenario, replications: int, *, seed: int | None = None,
                  workers: int = 1, assumptions: tuple[Assumption, ...] = ASSUMPTIONS,
                  progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """One row per assumption: the saving (min per shown visit, 95% CI) at the low and
    the high end, the base saving, and the swing (high minus low), largest swing first."""
    def saved(variant: Scenario) -> tuple[float, float, float]:
        res = run_replications(variant, replications, seed=seed, workers=workers,
                               keep_patients=False, progress=progress)
        return t_interval(res.kpis.time_saved.to_numpy(float))

    base = saved(sc)
    rows = []
    for a in assumptions:
        lo, hi = saved(with_value(sc, a.key, a.low)), saved(with_value(sc, a.key, a.high))
        rows.append({"assumption": a.key, "low": str(a.low), "high": str(a.high),
                     "why": a.why, "saved_base": base[0],
                     "saved_low": lo[0], "saved_low_ci_low": lo[1], "saved_low_ci_high": lo[2],
                     "saved_high": hi[0], "saved_high_ci_low": hi[1],
                     "saved_high_ci_high": hi[2], "swing": hi[0] - lo[0]})
    df = pd.DataFrame(rows)
    return df.reindex(df.swing.abs().sort_values(ascending=False).index).reset_index(drop=True)
