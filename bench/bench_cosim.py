"""Co-simulation throughput: simulated online patients per second of wall time when
their scans and payments are real calls to the card stack, with the stack in this
process (uvicorn in a thread) and in its own server process (over loopback HTTP).
Baseline, same run: the same day simulated without the stack (the plain twin).

    python -m bench.bench_cosim [--scenario scenarios/small_clinic.yaml]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console

from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.sdk import spawn_server, start_in_thread, stop_server
from twin.experiments.cosim import run_cosim
from twin.model.day import HospitalDay
from twin.scenario.schema import load_scenario

from .common import save


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenario", type=Path, default=Path("scenarios/small_clinic.yaml"))
    ap.add_argument("--port", type=int, default=8761)
    args = ap.parse_args()
    console = Console()
    sc = load_scenario(args.scenario)
    t0 = time.perf_counter()
    day = HospitalDay(sc, 0).run()
    plain_s = time.perf_counter() - t0
    online = int(((day.p.online) & ~(day.p.no_show)).sum())
    out: dict = {"scenario": sc.name, "online_patients": online,
                 "plain_twin_patients_per_s": online / plain_s}
    tmp = Path(tempfile.mkdtemp(prefix="ehc-cosim-bench-"))
    try:
        settings = Settings(var_dir=tmp / "inproc", log_level="WARNING",
                            rate_limit_terminal_per_s=0)
        with start_in_thread(settings) as stack:
            r = run_cosim(sc, stack.url, stack.admin_token, tmp / "out-inproc")
        out["in_process"] = {k: r[k] for k in ("patients_per_s", "calls", "latency_ms",
                                               "wall_s")} | {"match": r["check"]["match"]}
        var = tmp / "http"
        env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
               "EHC_RATE_LIMIT_TERMINAL_PER_S": "0"}
        server = spawn_server(env, args.port, "--no-access-log")
        try:
            r = run_cosim(sc, f"http://127.0.0.1:{args.port}",
                          deployment_secret(Settings(var_dir=var), "admin_token"),
                          tmp / "out-http")
        finally:
            stop_server(server)
        out["over_http"] = {k: r[k] for k in ("patients_per_s", "calls", "latency_ms",
                                              "wall_s")} | {"match": r["check"]["match"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for mode in ("in_process", "over_http"):
        out[mode]["slowdown_vs_plain_twin"] = (out["plain_twin_patients_per_s"]
                                               / out[mode]["patients_per_s"])
    path = save("cosim", out)
    console.print(out)
    console.print(f"co-simulation: {out['in_process']['patients_per_s']:.1f} patients/s "
                  f"in-process, {out['over_http']['patients_per_s']:.1f} over HTTP to a "
                  f"separate server; the plain twin ran the same day at "
                  f"{out['plain_twin_patients_per_s']:,.0f}/s -> {path}")


if __name__ == "__main__":
    main()
