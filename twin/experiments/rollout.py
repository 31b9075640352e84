"""The roll-out path: the province month by month (the hospitals live and the adoption
the fused cards allow in each month), each month against the same patients' day
all-traditional, and the curves planners report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from twin.experiments.province import city_table, run_province
from twin.scenario.province import Province


def run_rollout(prov: Province, base_dir: Path, months: list[int], *, workers: int = 1,
                scheduler: str | None = None, seed: int | None = None,
                replications: int | None = None,
                progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """One row per month: the province's adoption, minutes saved per visit with its 95 %
    interval, days saved a year, kiosks and windows needed under both flows, and the
    card network's busiest second. Each month is exactly what ``twin province --month``
    gives with the same seeds."""
    rows = []
    for month in months:
        res = run_province(prov, base_dir, month=month, workers=workers, scheduler=scheduler,
                           seed=seed, replications=replications, progress=progress)
        total = city_table(res).iloc[-1]  # the province's row
        peaks = res.demand_total.peaks()
        rows.append({"month": month, "adoption": total.adoption,
                     "minutes_saved_per_visit": total.minutes_saved_per_visit,
                     "ci_low": total.ci_low, "ci_high": total.ci_high,
                     "days_saved_per_year": total.days_saved_per_year,
                     "kiosks_needed_traditional": total.kiosks_needed_traditional,
                     "kiosks_needed_scenario": total.kiosks_needed_scenario,
                     "windows_needed_traditional": total.windows_needed_traditional,
                     "windows_needed_scenario": total.windows_needed_scenario,
                     "verify_peak_per_s": peaks["verify"]["peak_per_s"],
                     "calls_peak_per_s": peaks["total"]["peak_per_s"]})
    return pd.DataFrame(rows)
