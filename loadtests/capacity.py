"""``ehc loadtest capacity``: offer rising fixed rates until the SLO breaks (the knee),
for the hot path and for the trivial route of the same app, per server configuration,
and size the card network for the province's peak."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from .runner import (
    SATURATED,
    LoadOptions,
    Server,
    locust_rows,
    run_locust,
    seed,
    workload_arguments,
)
from .slo import Slo

TRIVIAL_ROUTE = "healthz"  # the baseline: the fast path's floor (issue 18's goal)

PER_USER_RPS = 5.0  # each user offers this many scans (or trivial requests) per second
# above this share of the host's cores busy (generator, servers, balancer and database
# share them here) a step's CPU a scan carries the host's contention, not the servers'
HOST_BUSY = 0.85


def host_jiffies() -> tuple[int, int] | None:
    """(busy, all) CPU time of every core of this host so far, in ticks (``/proc/stat``);
    None where there is none."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle and waiting for I/O
    return sum(ticks) - idle, sum(ticks)


def busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None
               ) -> float | None:
    """The share of the host's cores busy between two readings (``host_jiffies``)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _step(opts: LoadOptions, server: Server, seed_path: Path, out: Path, route: str,
          rate: float) -> dict:
    users = max(1, math.ceil(rate / PER_USER_RPS))
    step_opts = replace(opts, users=users, spawn_rate=users, rate_per_user=PER_USER_RPS,
                        workload=route if route == TRIVIAL_ROUTE else "scan", bad_share=0.0,
                        mix="terminal")
    step_out = out / f"{route}-{rate:g}"
    step_out.mkdir(parents=True)
    started, server_cpu, host = time.monotonic(), server.cpu_seconds(), host_jiffies()
    code, cpu = run_locust(step_opts, server.url,
                           workload_arguments(step_opts, seed_path, step_out),
                           step_out)
    wall = time.monotonic() - started
    server_cpu = server.cpu_seconds() - server_cpu
    host_busy = busy_share(host, host_jiffies())
    rows = locust_rows(step_out)
    row = rows.get(route, {})
    achieved = row.get("rps", 0.0)
    calls = sum(r.get("requests", 0) for r in rows.values())  # a scan: refresh + verify
    slo = json.loads((step_out / "slo.json").read_text()) if (step_out / "slo.json").exists() \
        else {"passed": False}
    return {"route": route, "offered_rps": rate, "achieved_rps": achieved,
            "p95_ms": row.get("p95_ms"), "p99_ms": row.get("p99_ms"),
            "failures": row.get("failures", 0), "slo_passed": bool(slo.get("passed")),
            "kept_up": achieved >= 0.9 * rate, "generator_cpu_share": cpu / wall if wall else 0,
            "host_cpu_share": host_busy,
            "server_cpu_us_per_scan": 1e6 * server_cpu / row["requests"]
            if row.get("requests") else None,
            "server_cpu_us_per_request": 1e6 * server_cpu / calls if calls else None,
            "locust_exit_code": code}


def refined_knee(passes: Callable[[float], bool], passed: float, failed: float,
                 times: int) -> float:
    """The highest rate that passed, between one that passed and one that failed, after
    up to ``times`` more steps offered at their midpoint (a whole rate): a ladder that
    doubles knows its knee only within a factor of two, and the cores a province needs
    are sized from it."""
    for _ in range(times):
        mid = float(round((passed + failed) / 2))
        if not passed < mid < failed:
            break
        if passes(mid):
            passed = mid
        else:
            failed = mid
    return passed


def run_capacity(rates: list[float], worker_counts: list[int], databases: list[str | None],
                 step_s: int, slo: Slo, out: Path, peak_per_s: float | None,
                 headroom: float, residents: int = 100, progress=print,
                 server_counts: tuple[int, ...] = (1,), refine: int = 0) -> dict:
    """Knees per configuration: database, uvicorn workers, and server processes (more
    than one: behind HAProxy with ``deploy/haproxy.cfg``, whose own CPU is not counted).
    ``refine``: steps of bisection between the last rate that passed and the first that
    failed (``refined_knee``)."""
    out.mkdir(parents=True, exist_ok=True)
    steps: list[dict[str, Any]] = []
    knees: list[dict[str, Any]] = []
    configs = [(db, w, n) for db in databases for n in server_counts for w in worker_counts]
    for db, workers, servers in configs:
        label = f"{'postgresql' if db else 'sqlite'}, {servers} server(s) x " \
                f"{workers} worker(s)"
        conf_out = out / f"{'pg' if db else 'sqlite'}-s{servers}-w{workers}"
        conf_out.mkdir(parents=True, exist_ok=True)
        opts = LoadOptions(duration_s=step_s, server_workers=workers, residents=residents,
                           database_url=db, slo=slo, lost_cards=0, servers=servers)
        server = Server(opts, conf_out)
        try:
            seed_path = seed(server, opts, conf_out)
            for route in (TRIVIAL_ROUTE, "verify"):
                offer = partial(_offered, opts, server, seed_path, conf_out, route, {
                    "database": "postgresql" if db else "sqlite", "server_workers": workers,
                    "servers": servers}, steps, partial(_labelled, progress, label))
                best, failed = None, None
                for rate in rates:
                    r = offer(rate)
                    if not _passed(r):
                        failed = rate
                        break
                    best = r
                if best is not None and failed is not None and refine:
                    knee = refined_knee(partial(_passes, offer), best["offered_rps"],
                                        failed, refine)
                    best = next(s for s in reversed(steps) if s["route"] == route
                                and s["offered_rps"] == knee)
                mine = [s for s in steps if s["route"] == route
                        and s["server_workers"] == workers and s["servers"] == servers
                        and s["database"] == ("postgresql" if db else "sqlite")]
                knees.append({
                    "database": "postgresql" if db else "sqlite", "server_workers": workers,
                    "servers": servers,
                    "route": route, "knee_rps": best["offered_rps"] if best else 0.0,
                    "knee_is_lower_bound": _lower_bound(best, mine),
                    "max_achieved_rps": max((s["achieved_rps"] for s in mine), default=0),
                    "generator_limited": any(s["generator_cpu_share"] > SATURATED
                                             for s in mine)})
        finally:
            server.stop()
    verify_knees = [k for k in knees if k["route"] == "verify" and k["knee_rps"] > 0]
    per_core = max((k["knee_rps"] / (k["server_workers"] * k["servers"])
                    for k in verify_knees), default=0.0)
    cores = math.ceil(peak_per_s * headroom / per_core) if peak_per_s and per_core else None
    for k in knees:  # the knee step's measured costs beside the knee
        at = [s for s in steps if s["route"] == k["route"] and s["database"] == k["database"]
              and s["server_workers"] == k["server_workers"] and s["servers"] == k["servers"]
              and s["offered_rps"] == k["knee_rps"]]
        k["server_cpu_us_per_scan"] = at[0]["server_cpu_us_per_scan"] if at else None
        k["generator_cpu_share"] = at[0]["generator_cpu_share"] if at else None
    result = {"steps": steps, "knees": knees, "goals": goals(knees, steps),
              "verify_per_core": per_core,
              "province_peak_verify_per_s": peak_per_s, "headroom": headroom,
              "cores_needed": cores, "per_user_rps": PER_USER_RPS, "step_seconds": step_s,
              "slo": slo.__dict__, "sizing": sizing(per_core, peak_per_s, headroom),
              "note": "a scan is a code refresh and a verification; the verify rate is scans/s"}
    (out / "capacity.json").write_text(json.dumps(result, indent=1))
    return result


def _offered(opts: LoadOptions, server: Server, seed_path: Path, out: Path, route: str,
             tags: dict[str, Any], steps: list[dict[str, Any]],
             progress: Callable[[str], object], rate: float) -> dict[str, Any]:
    """One step of ``route`` at ``rate``, tagged with its configuration, added to ``steps``
    and reported."""
    r = _step(opts, server, seed_path, out, route, rate) | tags
    steps.append(r)
    progress(f"{route} offered {rate:g}/s -> {r['achieved_rps']:.0f}/s, p95 {r['p95_ms']} ms, "
             f"SLO {'ok' if r['slo_passed'] else 'broken'}, generator CPU "
             f"{r['generator_cpu_share']:.0%}")
    return r


def _passed(step: dict[str, Any]) -> bool:
    """A step within the SLO that served at least 90 % of what was offered."""
    return bool(step["slo_passed"] and step["kept_up"])


def _lower_bound(knee: dict[str, Any] | None, steps: list[dict[str, Any]]) -> bool:
    """Whether a knee is only a lower bound: no offered rate above it broke the SLO, or
    the lowest that did had the generator above 90 % of its core (the generator's limit,
    maybe not the server's)."""
    if knee is None:
        return False
    broke = [s for s in steps if not _passed(s) and s["offered_rps"] > knee["offered_rps"]]
    return not broke or min(broke, key=lambda s: s["offered_rps"])[
        "generator_cpu_share"] > SATURATED


def _passes(offer: Callable[[float], dict[str, Any]], rate: float) -> bool:
    return _passed(offer(rate))


def _labelled(progress: Callable[[str], object], label: str, text: str) -> None:
    progress(f"{label}: {text}")


SCAN_KNEE_SHARE = 1 / 3  # issue 18: a scan's knee at least a third of /healthz's
SCALE_OUT_CPU = 1.2  # and two servers' CPU per scan within 1.2x one server's
SCALE_OUT_GOAL = "CPU per scan, 2 servers / 1, same rate per server"


def goals(knees: list[dict[str, Any]], steps: Sequence[dict[str, Any]] = ()
          ) -> list[dict[str, Any]]:
    """The capacity goals, measured: per configuration the scan's knee over the trivial
    route's; per database and workers, two servers' CPU per scan over one server's."""
    by = {(k["database"], k["server_workers"], k["servers"], k["route"]): k for k in knees}
    out: list[dict[str, Any]] = []
    for (db, workers, servers, route), k in by.items():
        floor = by.get((db, workers, servers, TRIVIAL_ROUTE))
        if route == "verify" and floor and floor["knee_rps"]:
            ratio = k["knee_rps"] / floor["knee_rps"]
            met: bool | None = ratio >= SCAN_KNEE_SHARE
            bound = ""  # the ratio is exact when both knees are
            if floor["knee_is_lower_bound"] and not k["knee_is_lower_bound"]:
                met, bound = (None if met else False), "at most"
            elif k["knee_is_lower_bound"] and not floor["knee_is_lower_bound"]:
                met, bound = (True if met else None), "at least"
            elif k["knee_is_lower_bound"]:
                met, bound = None, "unknown:"
            out.append({"goal": f"scan knee / {TRIVIAL_ROUTE} knee", "database": db,
                        "server_workers": workers, "servers": servers, "ratio": ratio,
                        "ratio_bound": bound, "limit": f">= {SCAN_KNEE_SHARE:.2f}",
                        "met": met} | _by_cpu(k, floor))
        one = by.get((db, workers, 1, "verify"))
        if route == "verify" and servers == 2 and one:
            out.append(_scale_out(db, workers, k, one, steps))
    return out


def _by_cpu(scan: dict[str, Any], floor: dict[str, Any]) -> dict[str, Any]:
    """The knees' ratio a server whose core is the limit would show: its knee is one
    core's second over the CPU a request costs, so the ratio is the floor's CPU a request
    over a scan's. An estimate, not a knee: it is what the report can say where the
    generator, not the server, stopped the floor's ladder."""
    scan_us, floor_us = scan.get("server_cpu_us_per_scan"), floor.get("server_cpu_us_per_scan")
    if not scan_us or not floor_us:
        return {}
    ratio = floor_us / scan_us
    return {"cpu_ratio": ratio, "met_by_cpu": ratio >= SCAN_KNEE_SHARE}


def _scale_out(db: str, workers: int, two: dict[str, Any], one: dict[str, Any],
               steps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Two servers' CPU per scan over one server's where each server takes the same rate
    (two at 2R against one at R, both served): what shared state adds. Judged at the
    highest such pair whose steps left the host's cores below ``HOST_BUSY``: above it
    (generator, servers, balancer and database on this host's cores) the CPU a scan
    carries the host's contention, which grows with the load, so the busier two-server
    step pays more for it; that pair's ratio is shown beside (``host_busy_ratio``). At
    the knees the two servers each take less than the one did, so their requests share
    fewer commits and wake-ups (``ratio_at_knees``, beside it: not contention alone)."""
    def served(servers: int) -> dict[float, dict[str, Any]]:
        return {s["offered_rps"]: s for s in steps
                if s["route"] == "verify" and s["database"] == db
                and s["server_workers"] == workers and s["servers"] == servers
                and s["slo_passed"] and s["kept_up"] and s["server_cpu_us_per_scan"]}

    def calm(*pair: dict[str, Any]) -> bool:
        return all((s.get("host_cpu_share") or 0.0) < HOST_BUSY for s in pair)
    ones, twos = served(1), served(2)
    pairs = sorted(r for r in twos if r / 2 in ones)
    at_knees = (two["server_cpu_us_per_scan"] / one["server_cpu_us_per_scan"]
                if two.get("server_cpu_us_per_scan") and one.get("server_cpu_us_per_scan")
                else None)
    row = {"goal": SCALE_OUT_GOAL, "database": db,
           "server_workers": workers, "servers": 2, "ratio": None,
           "limit": f"<= {SCALE_OUT_CPU}", "met": None, "ratio_at_knees": at_knees}

    def ratio(rate: float) -> float:
        return twos[rate]["server_cpu_us_per_scan"] / ones[rate / 2]["server_cpu_us_per_scan"]
    judged = [r for r in pairs if calm(twos[r], ones[r / 2])]
    if judged:  # the highest rate both served, the host below HOST_BUSY
        rate = judged[-1]
        row.update(ratio=ratio(rate), two_servers_rps=rate, met=ratio(rate) <= SCALE_OUT_CPU,
                   host_share=twos[rate].get("host_cpu_share"))
    if pairs and pairs[-1] not in judged:
        rate = pairs[-1]
        row.update(host_busy_ratio=ratio(rate), host_busy_rps=rate,
                   host_busy_share=twos[rate]["host_cpu_share"])
    return row


def goal_line(g: dict[str, Any]) -> str:
    """One goal as the capacity report prints it."""
    where = f"({g['database']}, {g['servers']} server(s) x {g['server_workers']} worker(s))"
    if g["ratio"] is None:
        text = (f"goal {g['goal']} {where}: not measured: offer rates R and 2R that one "
                "and two servers both serve (--rates)" + (
                    f" with the host's cores under {HOST_BUSY:.0%} busy"
                    if g.get("host_busy_rps") else ""))
    else:
        verdict = {True: "met", False: "NOT met"}.get(
            g["met"], "not measured: a knee was not reached, offer higher --rates")
        ratio = " ".join(filter(None, (g.get("ratio_bound"), f"{g['ratio']:.2f}")))
        text = f"goal {g['goal']} {where}: {ratio} (limit {g['limit']}): {verdict}"
    if g.get("cpu_ratio"):
        text += (f"; from the server's CPU a request at the knees, a server whose core is "
                 f"the limit: {g['cpu_ratio']:.2f} "
                 f"({'met' if g['met_by_cpu'] else 'NOT met'} by that estimate)")
    if g.get("two_servers_rps"):
        text += (f", two servers at {g['two_servers_rps']:g}/s against one at "
                 f"{g['two_servers_rps'] / 2:g}/s")
        if g.get("host_share") is not None:
            text += f" (the host's cores {g['host_share']:.0%} busy)"
    if g.get("host_busy_rps"):
        text += (f"; at {g['host_busy_rps']:g}/s against {g['host_busy_rps'] / 2:g}/s "
                 f"{g['host_busy_ratio']:.2f}, not judged: the host's cores "
                 f"{g['host_busy_share']:.0%} busy (generator, servers and store share them)")
    if g.get("ratio_at_knees"):
        text += f"; at the knees {g['ratio_at_knees']:.2f}"
    if g["goal"] == SCALE_OUT_GOAL:  # one run a configuration moves with the host
        text += ("; one run each here: python -m bench.bench_scaleout measures it in "
                 "alternate rounds on the same servers")
    return text


PROVINCE_REQUESTS_PER_S = 60_000  # health-code systems' sizing at a province's peak (DOMAIN 5)
CORES_PER_SERVER = 16


def sizing(per_core: float, peak_per_s: float | None, headroom: float) -> dict[str, Any]:
    """Cores and servers for the twin's peak and for 60,000 requests/s, from the measured
    scans/s per core. An extrapolation: it assumes throughput grows with cores and with
    servers behind a balancer as it grew from one worker to the next here, the same cost
    per scan on a production core, and a database that keeps up; none of these is measured
    beyond this machine."""
    if not per_core:
        return {}
    scans = PROVINCE_REQUESTS_PER_S / 2  # a scan is two requests: refresh and verify
    cores_60k = math.ceil(scans * headroom / per_core)
    out: dict[str, Any] = {
        "scans_per_core": per_core, "headroom": headroom,
        "requests_per_s": PROVINCE_REQUESTS_PER_S, "scans_per_s_at_60k": scans,
        "cores_at_60k": cores_60k,
        "servers_at_60k": math.ceil(cores_60k / CORES_PER_SERVER),
        "cores_per_server": CORES_PER_SERVER,
        "assumptions": "linear in cores and in servers behind a balancer (measured only "
                       "from 1 to 2 workers on one machine); the same cost per scan on a "
                       "production core; the database not the bottleneck (each channel "
                       "app's rate limit is one row that every batch of its refreshes on "
                       "every server moves, in a short transaction of their own: its "
                       "updates grow with the servers, measured up to two)",
    }
    if peak_per_s:
        cores = math.ceil(peak_per_s * headroom / per_core)
        out.update(peak_scans_per_s=peak_per_s, cores_at_peak=cores,
                   servers_at_peak=math.ceil(cores / CORES_PER_SERVER))
    return out
