"""A full province day (every level-2+ hospital of Zhejiang, both flows, one replication):
wall time and peak memory with 1 and with 2 worker processes, in the same run."""

from __future__ import annotations

import resource
import time
from pathlib import Path

from twin.experiments.province import run_province
from twin.scenario.province import load_province

from .common import save

PROVINCE = Path("scenarios/province/zhejiang.yaml")


def peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def main() -> None:
    prov = load_province(PROVINCE)
    out = {}
    for workers in (2, 1):
        t0 = time.perf_counter()
        res = run_province(prov, PROVINCE.parent, month=36, workers=workers)
        secs = time.perf_counter() - t0
        out[f"workers_{workers}"] = {"seconds": secs, "hospitals": len(res.hospitals),
                                     "patients": int(res.hospitals.patients_base.sum()
                                                     + res.hospitals.patients_scenario.sum())}
        print(f"{workers} worker(s): {secs:.1f} s for {len(res.hospitals)} hospitals, "
              f"{out[f'workers_{workers}']['patients']:,} simulated patient-days")
    speedup = out["workers_1"]["seconds"] / out["workers_2"]["seconds"]
    peak = peak_rss_mib()
    met = out["workers_2"]["seconds"] < 180 and peak < 2048
    print(f"speed-up of 2 workers over 1: {speedup:.2f}x; peak resident memory of any one "
          f"process: {peak:.0f} MiB")
    print(f"target under 3 min and 2 GB: {'met' if met else 'NOT met'}")
    print("wrote", save("province", {"runs": out, "speedup_2_over_1": speedup,
                                     "peak_rss_mib": peak, "target_met": met}))


if __name__ == "__main__":
    main()
