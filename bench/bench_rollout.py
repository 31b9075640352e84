"""The roll-out path of Zhejiang on two worker processes: wall time and peak memory for
the months chosen (default the whole path, months 0 to 36), against one month of the same
run (the baseline: without reuse a path costs its months x one month), beside the
10-minute goal (extrapolated to 37 months when fewer are chosen)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from twin.experiments.province import run_province
from twin.experiments.rollout import plan_rollout, run_rollout
from twin.scenario.province import load_province

from .bench_province import peak_rss_mib
from .common import save

PROVINCE = Path("scenarios/province/zhejiang.yaml")


def main(months: list[int]) -> None:
    prov = load_province(PROVINCE)
    t0 = time.perf_counter()
    run_province(prov, PROVINCE.parent, month=36, workers=2)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    plan = plan_rollout(prov, PROVINCE.parent, months, prov.replications)
    path = run_rollout(prov, PROVINCE.parent, months, workers=2, path=plan)
    secs = time.perf_counter() - t0
    ratio = secs / (one * len(months))
    full = secs / len(months) * 37
    peak = peak_rss_mib()
    print(f"one month: {one:.1f} s; {len(months)} months: {secs:.1f} s ({ratio:.2f}x the "
          f"months x one month; {len(plan.tasks)} distinct chunks of "
          f"{plan.chunks_without_reuse}; {plan.traditional_days_run} distinct "
          f"all-traditional days of {plan.traditional_days_needed}); 37 months"
          f"{'' if len(months) == 37 else ' extrapolated'}: {full / 60:.1f} min "
          f"({'within' if full <= 600 else 'NOT within'} the 10-minute goal); peak "
          f"resident memory of any one process: {peak:.0f} MiB")
    print("wrote", save("rollout", {"months": months, "seconds": secs, "one_month_seconds": one,
                                    "distinct_chunks": len(plan.tasks),
                                    "chunks_without_reuse": plan.chunks_without_reuse,
                                    "traditional_days_run": plan.traditional_days_run,
                                    "traditional_days_needed": plan.traditional_days_needed,
                                    "ratio_to_months_x_one": ratio,
                                    "full_path_minutes_extrapolated": full / 60,
                                    "peak_rss_mib": peak,
                                    "days_saved_per_year": path.days_saved_per_year.tolist()}))


if __name__ == "__main__":
    main([int(m) for m in sys.argv[1].split(",")] if len(sys.argv) > 1 else list(range(37)))
