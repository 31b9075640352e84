"""Auto-opening benchmark: ``ehc fuse --all`` over N e-SSC holders (default 1.2 million,
the paper's fused-card count) with the EHC and e-SSC systems in separate processes, as
in production, and ``--workers`` pages in flight (one range of card numbers each).
Baseline, same run: importing the same N holders into the e-SSC system
(a plain bulk write through the same HTTP stack); the fusion cost is reported as a ratio
to it, beside the absolute time against the 10-minute target.

    python -m bench.bench_fusion [--n 1200000] [--page 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.sdk import (
    AdminClient,
    fuse_all,
    generate_residents,
    insured_record,
    spawn_server,
    stop_server,
)

from .common import save

TARGET_S = 600.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_200_000)
    ap.add_argument("--page", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2, help="pages in flight at once")
    ap.add_argument("--port", type=int, default=8731)
    args = ap.parse_args()
    console = Console()
    var = Path(tempfile.mkdtemp(prefix="ehc-fuse-"))
    token = deployment_secret(Settings(var_dir=var), "admin_token")
    social_url = f"http://127.0.0.1:{args.port}"
    ehc_url = f"http://127.0.0.1:{args.port + 1}"
    base = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
            "EHC_SYNC_INTERVAL_S": "0"}
    quiet = ("--no-access-log", "--log-level", "warning")
    social = spawn_server({**base, "EHC_SYSTEMS": "registry,socialcard",
                           "EHC_HEALTHCARD_URL": ehc_url}, args.port, *quiet)
    ehc = spawn_server({**base, "EHC_SYSTEMS": "healthcard", "EHC_SOCIALCARD_URL": social_url,
                        "EHC_REGISTRY_URL": social_url}, args.port + 1, *quiet)
    try:
        with AdminClient(social_url, token, timeout_s=600) as admin_sc, \
                AdminClient(ehc_url, token, timeout_s=600) as admin_ehc, \
                Progress(console=console) as bar:
            task = bar.add_task("importing holders (baseline)", total=args.n)
            batch: list[dict] = []
            t0 = time.perf_counter()
            for i, person in enumerate(generate_residents(args.n, seed=99), start=1):
                batch.append(insured_record(person, i))
                if len(batch) == 5000 or i == args.n:
                    admin_sc.add_residents([{k: r[k] for k in ("id_type", "id_number", "name")}
                                            for r in batch])  # the real-name source
                    admin_sc.add_insured(batch)
                    bar.advance(task, len(batch))
                    batch = []
            import_s = time.perf_counter() - t0
            task = bar.add_task("fuse --all", total=args.n)
            t0 = time.perf_counter()
            totals = fuse_all(admin_ehc, admin_sc, page=args.page, workers=args.workers,
                              progress=lambda n: bar.advance(task, n))
            fuse_s = time.perf_counter() - t0
            stats = admin_sc.essc_stats()
    finally:
        stop_server(ehc)
        stop_server(social)
        shutil.rmtree(var, ignore_errors=True)
    projected = fuse_s * 1_200_000 / args.n
    result = {"holders": args.n, "page": args.page, "workers": args.workers, "totals": totals,
              "bindings_on_essc_side": stats["bindings_by_state"],
              "import_s": round(import_s, 1), "fuse_s": round(fuse_s, 1),
              "fuse_per_s": round(args.n / fuse_s), "ratio_fuse_to_import": round(
                  fuse_s / import_s, 2),
              "projected_1_2M_s": round(projected), "target_s": TARGET_S,
              "meets_target": projected < TARGET_S}
    path = save("fusion", result)
    console.print(result)
    console.print(f"fuse --all: {args.n:,} holders in {fuse_s:.0f} s ({args.n / fuse_s:,.0f}/s; "
                  f"{fuse_s / import_s:.2f}x the plain import); 1.2 M projected "
                  f"{projected:.0f} s vs target {TARGET_S:.0f} s -> {path}")


if __name__ == "__main__":
    main()
