"""The workload's options, added to Locust's own parser (``--ehc-*``): what ``ehc
loadtest`` passes on the Locust command line, and what a user of plain ``locust -f
loadtests/locustfile.py`` sets by hand. Read through ``environment.parsed_options``,
never at import time."""

from __future__ import annotations

from typing import Any

from loadtests import mix
from loadtests.slo import Slo

TRIVIAL = ("healthz", "ping")  # baseline workloads: GET /healthz, GET /ping

SLO = Slo()


def add_arguments(parser: Any) -> None:
    """Listener of ``events.init_command_line_parser``."""
    g = parser.add_argument_group("ehc-twin workload")
    g.add_argument("--ehc-seed-file", default="var/seed.json",
                   help="seed file of `ehc seed` (terminals, app, cards, lost cards)")
    g.add_argument("--ehc-bad-share", type=float, default=0.05,
                   help="share of scans with a bad code (tampered, replayed, lost, expired)")
    g.add_argument("--ehc-rate-per-user", type=float, default=0.0,
                   help="requests/s each user offers (constant throughput; 0: back to back)")
    g.add_argument("--ehc-weights", default=mix.encode(mix.DEFAULT),
                   help="users of each kind, e.g. terminal:6,fused:3,settle:1,app:1")
    g.add_argument("--ehc-workload", choices=("scan", *TRIVIAL), default="scan",
                   help="scan (terminals, fused scans, settlements, apps), or a trivial "
                   "route as the baseline: healthz (the fast path's floor) or ping (the "
                   "framework's)")
    g.add_argument("--ehc-code-limit", type=int, default=3,
                   help="verifications a dynamic code allows (the replayed scans' limit)")
    g.add_argument("--ehc-expired-after-s", type=float, default=95.0,
                   help="age after which a kept code is shown as expired")
    g.add_argument("--ehc-shape", choices=("constant", "step", "spike", "demand"),
                   default="constant", help="load shape (loadtests/shapes.py)")
    g.add_argument("--ehc-shape-users", type=int, default=10, help="users at the shape's top")
    g.add_argument("--ehc-shape-duration-s", type=float, default=30.0, help="shape length")
    g.add_argument("--ehc-demand-csv", default="", help="the twin's demand curve (demand "
                   "shape)")
    g.add_argument("--ehc-compress", type=float, default=60.0,
                   help="demand shape: simulated seconds per test second")
    g.add_argument("--ehc-scale", type=float, default=1.0, help="demand shape: rate scale")
    g.add_argument("--ehc-slo-p95-ms", type=float, default=SLO.p95_ms)
    g.add_argument("--ehc-slo-p99-ms", type=float, default=SLO.p99_ms)
    g.add_argument("--ehc-slo-max-failure-ratio", type=float, default=SLO.max_failure_ratio)
    g.add_argument("--ehc-slo-min-rps", type=float, default=SLO.min_rps)
    g.add_argument("--ehc-load-out", default="",
                   help="folder for slo.json and the verified usage-record IDs")


def slo_of(options: Any) -> Slo:
    return Slo(options.ehc_slo_p95_ms, options.ehc_slo_p99_ms,
               options.ehc_slo_max_failure_ratio, options.ehc_slo_min_rps)


def arguments(*, seed_file: str, bad_share: float, rate_per_user: float,
              weights: dict[str, int], workload: str, shape: str, users: int,
              duration_s: float, demand_csv: str, compress: float, scale: float, slo: Slo,
              out: str) -> list[str]:
    """The Locust command-line arguments of these options (what ``ehc loadtest`` runs)."""
    values = {"seed-file": seed_file, "bad-share": bad_share,
              "rate-per-user": rate_per_user, "weights": mix.encode(weights),
              "workload": workload, "shape": shape, "shape-users": users,
              "shape-duration-s": duration_s, "demand-csv": demand_csv,
              "compress": compress, "scale": scale, "slo-p95-ms": slo.p95_ms,
              "slo-p99-ms": slo.p99_ms, "slo-max-failure-ratio": slo.max_failure_ratio,
              "slo-min-rps": slo.min_rps, "load-out": out}
    return [f"--ehc-{k}={v}" for k, v in values.items()]
