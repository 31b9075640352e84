"""``ehc loadtest``: Locust against the card network with SLO gates."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(invoke_without_command=True,
                  help="Locust against the card network (`ehc loadtest capacity` for knees).")
console = Console(soft_wrap=True)  # a report line stays one line in a log file
errors = Console(stderr=True, soft_wrap=True)  # errors on stderr, results on stdout


@app.callback()
def loadtest(
    ctx: typer.Context,
    shape: str = typer.Option("constant", help="constant, step, spike or demand"),
    users: int = typer.Option(20, min=1, help="users (the peak for step and spike)"),
    spawn_rate: float = typer.Option(20.0, min=0.1, max=1e4),
    duration: int = typer.Option(30, min=1, help="seconds (constant, step, spike)"),
    workers: int = typer.Option(1, min=1, max=32, help="uvicorn worker processes"),
    servers: int = typer.Option(1, min=1, max=2, help="server processes: 2 runs them on one "
                                "store behind HAProxy with deploy/haproxy.cfg"),
    kill_one_after: float = typer.Option(0.0, min=0, max=86_400,
                                         help="with --servers 2: kill the first server "
                                         "this many seconds into the run"),
    target: str | None = typer.Option(None, help="drive a running deployment at this URL "
                                      "(its balancer) instead of starting one"),
    admin_token: str | None = typer.Option(None, envvar="EHC_ADMIN_TOKEN",
                                           help="the target's admin token (seeding, checks)"),
    processes: int = typer.Option(1, min=1, max=64, help="Locust generator processes"),
    distributed: int = typer.Option(0, min=0, max=64,
                                    help="run a Locust master and this many workers"),
    residents: int = typer.Option(200, min=10),
    bad_share: float = typer.Option(0.05, min=0, max=1, help="share of bad scans"),
    rate_per_user: float = typer.Option(0.0, min=0, max=1e6,
                                        help="requests/s per user (constant throughput)"),
    demand_csv: Path | None = typer.Option(None, help="demand.csv of `ehc twin province`"),
    mix_: str = typer.Option("default", "--mix", help="users of each kind: default "
                             "(terminal 6, fused 3, settle 1, app 1, kiosk 1, retail 1), "
                             "demand (the demand curve's proportions; needs --demand-csv) or "
                             "terminal (plain scans only)"),
    compress: float = typer.Option(60.0, min=1, max=1e6, help="simulated seconds per test second"),
    scale: float = typer.Option(1.0, min=0, max=1e6, help="factor on the demand curve's rate"),
    database_url: str | None = typer.Option(None, envvar="EHC_LOADTEST_DATABASE_URL",
                                            help="PostgreSQL URL (default SQLite)"),
    slo_p95_ms: float = typer.Option(200.0, min=0, max=3.6e6, help="verify p95 limit"),
    slo_p99_ms: float = typer.Option(500.0, min=0, max=3.6e6, help="verify p99 limit"),
    slo_max_failure_ratio: float = typer.Option(0.01, min=0, max=1,
                                                help="unexpected answers / requests"),
    slo_min_rps: float = typer.Option(0.0, min=0, max=1e7, help="verify throughput floor"),
    out: Path | None = typer.Option(None, help="default `results/loadtest/<timestamp>`"),
    force: bool = typer.Option(False, "--force", help="clear --out first when an earlier "
                               "run left files there (otherwise such a folder is refused)"),
) -> None:
    """Start the stack, seed it, run Locust headless, gate on SLOs (exit 1 when broken)."""
    if ctx.invoked_subcommand is not None:
        return
    from .runner import INTERRUPTED, LoadOptions, default_out, run_loadtest
    from .slo import Slo

    if shape == "demand" and demand_csv is None:
        errors.print("[red]--shape demand needs --demand-csv (from ehc twin province)[/]")
        raise typer.Exit(2)
    if shape not in ("constant", "step", "spike", "demand"):
        errors.print(f"[red]unknown shape {shape!r}: constant, step, spike or demand[/]")
        raise typer.Exit(2)
    if demand_csv is not None and not demand_csv.exists():
        errors.print(f"[red]no such demand CSV: {demand_csv}[/]")
        raise typer.Exit(2)
    if demand_csv is not None:  # read now, not after the stack has started
        from . import mix
        from .shapes import demand_curve

        try:
            mix.from_demand(demand_csv)
            demand_curve(demand_csv, compress=compress, scale=scale)
        except ValueError as exc:
            errors.print(str(exc), style="red", markup=False)
            raise typer.Exit(2) from None
    if mix_ not in ("default", "demand", "terminal") or (mix_ == "demand"
                                                         and demand_csv is None):
        errors.print("[red]--mix is default, terminal, or demand with --demand-csv[/]")
        raise typer.Exit(2)
    if kill_one_after and servers < 2:
        errors.print("[red]--kill-one-after needs --servers 2 (one must stay up)[/]")
        raise typer.Exit(2)
    if target is not None and (not admin_token or servers > 1 or database_url):
        errors.print("[red]--target needs the deployment's --admin-token (or EHC_ADMIN_TOKEN)"
                     " and takes no --servers or --database-url: it runs already[/]")
        raise typer.Exit(2)
    if servers > 1:
        from .fleet import haproxy_binary

        if haproxy_binary() is None:
            errors.print("[red]--servers 2 needs HAProxy (Debian: apt-get install haproxy)[/]")
            raise typer.Exit(2)
    _store_or_exit(database_url)
    if out is not None:
        fresh_folder(out, force)
    out = out or default_out()
    opts = LoadOptions(shape=shape, users=users, spawn_rate=spawn_rate, duration_s=duration,
                       server_workers=workers, processes=processes, servers=servers,
                       kill_one_after_s=kill_one_after, target=target,
                       admin_token=admin_token,
                       distributed_workers=distributed, residents=residents,
                       bad_share=bad_share, rate_per_user=rate_per_user,
                       demand_csv=demand_csv, compress=compress, scale=scale, mix=mix_,
                       database_url=database_url,
                       slo=Slo(slo_p95_ms, slo_p99_ms, slo_max_failure_ratio, slo_min_rps),
                       out=out)
    try:
        code, summary = run_loadtest(opts)
    except RuntimeError as exc:  # a stack or balancer that would not start
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        errors.print("[yellow]interrupted[/]: the servers are stopped; " + (
            f"what the run had written is in {out} ({INTERRUPTED} says it is partial)"
            if (out / INTERRUPTED).exists() else "the stack had not started: nothing kept"))
        raise typer.Exit(130) from None
    for name in ("verify", "verify fused", "settle", "book"):
        v = summary["locust"].get(name)
        if v:
            console.print(f"{name}: {v['requests']} requests, {v['rps']:.0f}/s, p95 "
                          f"{v['p95_ms']:.0f} ms, p99 {v['p99_ms']:.0f} ms")
    r = summary["records"]
    console.print(f"usage records on the server {r['usage_records']}, successful verifies "
                  f"{r['successful_verifies_locust']} (Locust, each with its record: "
                  f"{r['missing_on_server']} missing, {r['duplicates']} duplicated; "
                  f"{r['in_flight_at_stop']} finished after Locust stopped), server 2xx "
                  f"{summary['verify_2xx_server']}: "
                  f"{'consistent' if summary['records_match'] else 'INCONSISTENT'}")
    b = summary["bookings"]
    sv = summary["servers"]
    if sv["processes"] > 1 or sv["target"]:
        where = sv["target"] or f"{sv['processes']} servers behind HAProxy"
        killed = f", {len(sv['killed'])} killed mid-run" if sv["killed"] else ""
        counts = "checked" if summary["server_counts_checked"] else \
            "not all readable (a killed or remote server): records checked against Locust"
        console.print(f"{where}{killed}; the servers' own counts {counts}")
    console.print(f"bookings acknowledged {b['bookings_acknowledged']}, on the server "
                  f"{b['bookings_on_server']}: {'consistent' if b['ok'] else 'INCONSISTENT'}")
    st = summary["settlements"]
    console.print(f"settlements {st['by_state']}: "
                  f"{'reconciled clean' if st['clean'] else 'DIFFERENCES'}; users "
                  f"{summary['weights']}")
    if "warning" in summary:
        console.print(f"[yellow]{summary['warning']}[/]")
    slo = summary.get("slo") or {}
    console.print(f"SLO: {'PASSED' if slo.get('passed') else 'FAILED'}; report in "
                  f"{summary['out']}")
    raise typer.Exit(code)


@app.command("capacity")
def capacity(
    rates: str = typer.Option("50,100,200,400,800", help="offered rates per second, rising"),
    workers: str = typer.Option("1,2", help="uvicorn worker counts to measure"),
    servers: str = typer.Option("1", help="server process counts to measure: 2 runs two "
                                "behind HAProxy (deploy/haproxy.cfg)"),
    step_duration: int = typer.Option(8, min=2, help="seconds per step"),
    refine: int = typer.Option(2, min=0, help="steps of bisection between the last rate "
                               "that passed and the first that failed (0: the ladder's "
                               "rates only)"),
    database_url: str | None = typer.Option(None, envvar="EHC_LOADTEST_DATABASE_URL",
                                            help="also measure on this PostgreSQL"),
    slo_p95_ms: float = typer.Option(200.0, min=0, max=3.6e6),
    slo_p99_ms: float = typer.Option(500.0, min=0, max=3.6e6),
    province_peaks: Path = typer.Option(Path("results/province/demand_peaks.json"),
                                        help="demand peaks of `ehc twin province`"),
    headroom: float = typer.Option(2.0, min=1.0, max=100),
    out: Path | None = typer.Option(None, help="default results/loadtest/capacity, "
                                    "replaced"),
    force: bool = typer.Option(False, "--force", help="clear --out first when an earlier "
                               "run left files there (otherwise such a folder is refused)"),
) -> None:
    """Step the offered rate up until the SLO breaks, for scans and /healthz, per config."""
    import json

    from .capacity import goal_line, run_capacity
    from .slo import Slo

    try:
        rate_list = [float(r) for r in rates.split(",")]
        worker_list = [int(w) for w in workers.split(",")]
        server_list = tuple(int(n) for n in servers.split(","))
    except ValueError:
        rate_list, worker_list = [], []
    if not (rate_list and all(0 < r < math.inf for r in rate_list)
            and rate_list == sorted(set(rate_list)) and min(worker_list, default=0) >= 1):
        errors.print("[red]--rates takes rising numbers above 0 (50,100,...), --workers "
                     "and --servers whole numbers from 1[/]")
        raise typer.Exit(2)
    if not set(server_list) <= {1, 2}:
        errors.print("[red]--servers: 1 and/or 2 (deploy/haproxy.cfg names two)[/]")
        raise typer.Exit(2)
    if 2 in server_list:
        from .fleet import haproxy_binary

        if haproxy_binary() is None:
            errors.print("[red]--servers 2 needs HAProxy (Debian: apt-get install haproxy)[/]")
            raise typer.Exit(2)
    _store_or_exit(database_url)
    out = fresh_folder(out or Path("results/loadtest/capacity"), force or out is None)
    peak = None
    if province_peaks.exists():
        peak = json.loads(province_peaks.read_text())["verify"]["peak_per_s"]
    try:
        result = run_capacity(sorted(rate_list), worker_list, [None, *([database_url] if
                              database_url else [])], step_duration,
                              Slo(slo_p95_ms, slo_p99_ms, 0.01, 0.0), out, peak, headroom,
                              progress=console.print, server_counts=server_list,
                              refine=refine)
    except RuntimeError as exc:  # a stack or balancer that would not start
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    for k in result["knees"]:
        cost, share = k.get("server_cpu_us_per_scan"), k.get("generator_cpu_share")
        unit = "scan" if k["route"] == "verify" else "request"
        console.print(f"{k['database']}, {k['servers']} server(s) x {k['server_workers']} "
                      f"worker(s), {k['route']}: knee "
                      f"{k['knee_rps']:g}/s (max achieved {k['max_achieved_rps']:.0f}/s)"
                      + (f", server CPU {cost:,.0f} us per {unit}" if cost else "")
                      + (f", generator CPU {share:.0%}" if share is not None else "")
                      + (" [generator-limited]" if k["generator_limited"] else ""))
    for g in result["goals"]:
        console.print(goal_line(g))
    size = result.get("sizing") or {}
    if size:
        console.print(f"60,000 requests/s ({size['scans_per_s_at_60k']:,.0f} scans/s) at "
                      f"{headroom:g}x headroom: {size['cores_at_60k']:,} cores, "
                      f"{size['servers_at_60k']:,} servers of {size['cores_per_server']} cores "
                      f"({size['scans_per_core']:.0f} scans/s per core). Extrapolated, "
                      f"assuming: {size['assumptions']}.")
    if result["cores_needed"]:
        console.print(f"[bold]The province's peak of {peak:g} verifications/s needs "
                      f"{result['cores_needed']} core(s) at {headroom:g}x headroom "
                      f"({result['verify_per_core']:.0f} scans/s per core).[/]")
    else:
        console.print("no province peak (run `ehc twin province`) or no passing step")
    console.print(f"wrote capacity.json to {out}")


def _store_or_exit(database_url: str | None) -> None:
    """Exit 2 at once, naming the store and why, when ``--database-url`` cannot be opened
    (not after the SQLite configurations' minutes, with a traceback)."""
    if database_url:
        from services.sdk import store_unreachable

        problem = store_unreachable(database_url)
        if problem:
            errors.print(problem, style="red", markup=False)
            raise typer.Exit(2)


def fresh_folder(out: Path, force: bool) -> Path:
    """An empty folder for a run (each test needs a fresh database), or exit 2."""
    from twin.results.folders import FolderRefused
    from twin.results.folders import fresh_folder as folder

    try:
        return folder(out, out, force)
    except FolderRefused as exc:
        errors.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
