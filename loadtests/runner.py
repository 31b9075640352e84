"""``ehc loadtest``: start the stack, seed it, run Locust headless, check the server's own
count against Locust's, and write everything to ``results/loadtest/<timestamp>/``."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from services.sdk import (
    AdminClient,
    ChannelClient,
    HospitalClient,
    Settings,
    TerminalClient,
    cpu_seconds,
    cst_today_text,
    fuse_all,
    prepare_store,
    seed_stack,
    spawn_server,
    stop_server,
    write_seed_file,
)

from . import mix, options
from .fleet import Fleet, Remote, servers_of
from .slo import HOT, Slo

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SATURATED = 0.9  # generator CPU share above which its figures are suspect


@dataclass
class LoadOptions:
    shape: str = "constant"
    users: int = 20
    spawn_rate: float = 20.0
    duration_s: int = 30
    server_workers: int = 1
    processes: int = 1  # Locust generator processes on this machine (--processes)
    distributed_workers: int = 0  # >0: a master and this many worker processes
    residents: int = 200
    lost_cards: int = 5
    bad_share: float = 0.05
    rate_per_user: float = 0.0
    # default (loadtests/mix.py), demand (the curve's proportions) or terminal (scans only)
    mix: str = "default"
    demand_csv: Path | None = None
    compress: float = 60.0
    scale: float = 1.0
    database_url: str | None = None
    workload: str = "scan"  # scan (terminals + apps), or healthz or ping (a trivial route)
    servers: int = 1  # >1: that many `ehc serve` processes behind HAProxy (deploy/)
    kill_one_after_s: float = 0.0  # >0: the first server is killed this far into the run
    target: str | None = None  # a running deployment (its admin token below) instead
    admin_token: str | None = None
    slo: Slo = field(default_factory=Slo)
    out: Path | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _raise_nofile() -> None:
    """Locust and uvicorn keep a socket per user: lift the soft open-file limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    """The stack in its own process(es): uvicorn with N workers, or (``servers`` > 1)
    that many server processes on one store behind HAProxy; stats on shutdown."""

    def __init__(self, opts: LoadOptions, out: Path) -> None:
        self.stats_dir = out / "server-stats"
        var = out / "var"
        # a load test measures the network, not the per-caller limiter: its threshold is
        # lifted (the limiter still runs on every request)
        self.env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
                    "EHC_STATS_DIR": str(self.stats_dir),
                    "EHC_RATE_LIMIT_TERMINAL_PER_S": "1e9", "EHC_RATE_LIMIT_APP_PER_S": "1e9"}
        if opts.database_url:
            self.env["EHC_DATABASE_URL"] = opts.database_url
            self.env["EHC_DB_SCHEMA_PREFIX"] = f"lt{uuid.uuid4().hex[:8]}_"
        # create tables, keys and secrets once, before several workers race for them
        settings = Settings(var_dir=var, database_url=opts.database_url,
                            db_schema_prefix=self.env.get("EHC_DB_SCHEMA_PREFIX", ""))
        self.admin_token = prepare_store(settings)
        args = ["--workers", str(opts.server_workers), "--timeout-keep-alive", "30",
                "--log-level", "warning", "--no-access-log"]
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.fleet: Fleet | None = None
        if opts.servers > 1:
            self.fleet = Fleet(self.env, [_free_port() for _ in range(opts.servers)],
                               self.port, args, preexec_fn=_raise_nofile)
            self.procs = self.fleet.procs
        else:
            self.procs = [spawn_server(self.env, self.port, *args, preexec_fn=_raise_nofile)]

    @property
    def killed(self) -> bool:
        return bool(self.fleet and self.fleet.killed)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the servers so far: uvicorn and its workers (a
        killed server's is gone with it)."""
        pids = [p.pid for p in self.procs if p.poll() is None]
        total = 0.0
        while pids:
            pid = pids.pop()
            try:
                total += cpu_seconds(pid)
                for task in Path(f"/proc/{pid}/task").iterdir():
                    pids += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, IndexError, ValueError):
                continue  # a worker that has just exited
        return total

    def stop(self) -> dict:
        if self.fleet is not None:
            self.fleet.stop()
        else:
            stop_server(self.procs[0])
        merged: dict = {"workers": 0, "routes": {}}
        for f in sorted(self.stats_dir.glob("server-stats-*.json")):
            snap = json.loads(f.read_text())
            merged["workers"] += 1
            merged["buckets_ms"] = snap["buckets_ms"]
            for key, r in snap["routes"].items():
                m = merged["routes"].setdefault(key, {"count": 0, "by_status": {},
                                                      "histogram_ms": [0] * len(r["histogram_ms"]),
                                                      "sum_ms": 0.0})
                m["count"] += r["count"]
                m["sum_ms"] += r["sum_ms"]
                for k, v in r["by_status"].items():
                    m["by_status"][k] = m["by_status"].get(k, 0) + v
                m["histogram_ms"] = [a + b for a, b in zip(m["histogram_ms"],
                                                           r["histogram_ms"], strict=True)]
        return merged


def seed(server: Server | Remote, opts: LoadOptions, out: Path) -> Path:
    data = seed_stack(server.url, server.admin_token, opts.residents)
    app = data["channel_apps"][0]
    lost = [c["card_id"] for c in data["cards"][-opts.lost_cards:]] if opts.lost_cards else []
    with ChannelClient(server.url, app["app_key"], app["app_secret"]) as client:
        for card_id in lost:
            client.report_lost(card_id)
    data["lost_cards"] = lost
    with AdminClient(server.url, server.admin_token, timeout_s=300) as admin:
        fuse_all(admin, admin)  # every insured resident's two cards bound
    data["fused_cards"] = [c["card_id"] for c in data["cards"]
                           if "ssc_card_no" in c and c["card_id"] not in lost]
    data["hospital"] = hospital_session(server)
    # behind a balancer that names its servers, each institution's: Locust's terminal
    # users then fall evenly on the servers, as a province's thousands of institutions
    # would (the seed's eleven hospitals the hash splits unevenly)
    served_by = servers_of(server.url, data["institutions"]) or {}
    for inst in data["institutions"]:
        if inst["code"] in served_by:
            inst["served_by"] = served_by[inst["code"]]
    path = out / "seed.json"
    write_seed_file(data, path)
    return path


def hospital_session(server: Server | Remote) -> dict:
    """A doctor's session tomorrow, all day, for the kiosk users to book (the hospital's
    systems call with a token: here the operator's)."""
    # the hospital's days are China Standard Time days (UTC+8), whatever this machine's
    # zone: a local "tomorrow" can be today there, with its early slots passed
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600 + 86_400))
    with HospitalClient(server.url, server.admin_token) as hospital:
        hospital.add_department("0101", "内科")
        doctor = f"load{uuid.uuid4().hex[:8]}"
        hospital.add_doctor(doctor, "0101", "load test")
        sid = hospital.add_session(doctor, tomorrow, "00:00", "23:45", per_slot=100,
                                   walk_in_share=0.3)
    return {"session_id": sid, "token": server.admin_token,
            "slots": [f"{m // 60:02d}:{m % 60:02d}" for m in range(0, 23 * 60 + 45, 15)]}


def booking_check(server: Server | Remote, seed_path: Path, out: Path, users: int) -> dict:
    """Every booking Locust saw acknowledged is on the server, once; beyond them, at most
    one a user (a request the server finished after Locust stopped waiting)."""
    session = json.loads(seed_path.read_text())["hospital"]["session_id"]
    with HospitalClient(server.url, server.admin_token) as hospital:
        held = sum(s["booked"] for s in hospital.request(
            "GET", f"/hospital/v1/sessions/{session}/slots"))
    seen = [b for f in out.glob("booking-ids-*.json") for b in json.loads(f.read_text())]
    return {"bookings_acknowledged": len(seen), "bookings_on_server": held,
            "duplicates": len(seen) - len(set(seen)),
            "ok": len(set(seen)) == len(seen) and len(seen) <= held <= len(seen) + users}


def settlement_check(server: Server | Remote) -> dict:
    """The day's settlements by state and whether they reconcile (ledger, gateway)."""
    with AdminClient(server.url, server.admin_token, timeout_s=300) as admin:
        report = admin.reconcile_settlements(cst_today_text())
    return {"by_state": report["by_state"], "clean": report["clean"],
            "differences": report["differences"][:20]}


def usage_records(server: Server | Remote, seed_path: Path) -> dict[str, list[int]]:
    """IDs of the usage records the server holds by institution code, read through each
    institution's own route (an institution sees only its own)."""
    data = json.loads(seed_path.read_text())
    ids: dict[str, list[int]] = {}
    for inst in data["institutions"] + data.get("pharmacies", []):
        if not inst["terminals"]:
            continue  # registered by an earlier seed: its terminals' secrets are there
        t = inst["terminals"][0]
        held = ids.setdefault(inst["code"], [])
        with TerminalClient(server.url, t["terminal_id"], t["secret"],
                            city_code=inst["city_code"]) as term:
            after = 0
            while batch := term.usage_records(after_id=after, limit=1000):
                held.extend(r["id"] for r in batch)
                after = batch[-1]["id"]
    return ids


def records_by_server(seed_path: Path, records: dict[str, list[int]]) -> dict[str, int]:
    """Usage records of each server's institutions (as the balancer sent them when the
    stack was seeded; empty where it names no server): how evenly the scans fell."""
    by_server: dict[str, int] = {}
    for inst in json.loads(seed_path.read_text())["institutions"]:
        if "served_by" in inst:
            by_server[inst["served_by"]] = (by_server.get(inst["served_by"], 0)
                                            + len(records.get(inst["code"], [])))
    return dict(sorted(by_server.items()))


def weights_for(opts: LoadOptions) -> dict[str, int]:
    """Users of each kind: the default mix, the demand curve's, or scans only."""
    if opts.mix == "demand":
        if opts.demand_csv is None:
            raise ValueError("the demand mix needs a demand CSV (ehc twin province writes one)")
        return mix.from_demand(opts.demand_csv)
    return mix.ONLY_TERMINALS if opts.mix == "terminal" else mix.DEFAULT


def workload_arguments(opts: LoadOptions, seed_path: Path, out: Path) -> list[str]:
    """The workload's ``--ehc-*`` options on Locust's command line."""
    return options.arguments(
        seed_file=str(seed_path), bad_share=opts.bad_share, rate_per_user=opts.rate_per_user,
        weights=weights_for(opts), workload=opts.workload, shape=opts.shape, users=opts.users,
        duration_s=opts.duration_s, demand_csv=str(opts.demand_csv or ""),
        compress=opts.compress, scale=opts.scale, slo=opts.slo, out=str(out))


def locust_env() -> dict[str, str]:
    """The generator's environment: this checkout importable (the locustfile imports
    ``loadtests`` and ``services.sdk``)."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def run_locust(opts: LoadOptions, url: str, workload: list[str], out: Path
               ) -> tuple[int, float]:
    """(exit code, generator CPU seconds)."""
    env = locust_env()
    common = ["-f", str(LOCUSTFILE), "--host", url, *workload]
    headless = ["--headless", "-u", str(opts.users), "-r", str(opts.spawn_rate),
                "-t", f"{opts.duration_s}s", "--csv", str(out / "locust"),
                "--html", str(out / "report.html"), "--json-file", str(out / "locust"),
                "--only-summary"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cmd = [sys.executable, "-m", "locust", *common, *headless]
    workers: list[subprocess.Popen] = []
    if opts.distributed_workers:
        port = _free_port()
        cmd += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                "--expect-workers", str(opts.distributed_workers)]
        master = subprocess.Popen(cmd, env=env, preexec_fn=_raise_nofile)
        for _ in range(opts.distributed_workers):
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "locust", *common, "--worker", "--master-host",
                 "127.0.0.1", "--master-port", str(port)], env=env, preexec_fn=_raise_nofile))
        code = master.wait()
        for w in workers:
            w.wait(timeout=30)
    else:
        if opts.processes > 1:
            cmd += ["--processes", str(opts.processes)]
        code = subprocess.run(cmd, env=env, preexec_fn=_raise_nofile).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, cpu


def _percentile(times: dict[str, int], q: float) -> float:
    """Locust's bucketed response-time histogram -> the q-th percentile (ms)."""
    total = sum(times.values())
    if not total:
        return 0.0
    seen = 0
    for ms, n in sorted(((float(k), v) for k, v in times.items()), reverse=True):
        seen += n
        if seen >= total * (1 - q):
            return ms
    return 0.0


def locust_rows(out: Path) -> dict[str, dict]:
    """Per request name from Locust's final JSON (its CSV is written before the last
    requests are counted, the JSON after)."""
    path = out / "locust.json"
    if not path.exists():
        return {}
    rows = {}
    for e in json.loads(path.read_text()):
        span = max(e["last_request_timestamp"] - e["start_time"], 1e-9)
        rows[e["name"]] = {
            "requests": e["num_requests"], "failures": e["num_failures"],
            "rps": e["num_requests"] / span,
            "mean_ms": e["total_response_time"] / max(e["num_requests"], 1),
            "p50_ms": _percentile(e["response_times"], 0.50),
            "p95_ms": _percentile(e["response_times"], 0.95),
            "p99_ms": _percentile(e["response_times"], 0.99),
            "max_ms": e["max_response_time"]}
    return rows


def _started(opts: LoadOptions, out: Path) -> Server:
    """The run's stack; a store that cannot be made or a stack that does not start
    leaves nothing of the run behind (its ``var/``, and ``out`` itself when empty)."""
    try:
        return Server(opts, out)
    except BaseException:
        shutil.rmtree(out / "var", ignore_errors=True)
        with contextlib.suppress(OSError):
            out.rmdir()  # only when nothing else is in it
        raise


INTERRUPTED = "INTERRUPTED.txt"  # in a run's folder: it stopped before its end


def default_out() -> Path:
    return Path("results/loadtest") / time.strftime("%Y%m%d-%H%M%S")


def run_loadtest(opts: LoadOptions) -> tuple[int, dict]:
    out = opts.out or default_out()
    # a target that cannot be reached, or refuses the token, is refused before any folder
    remote = Remote(opts.target, opts.admin_token or "") if opts.target else None
    out.mkdir(parents=True, exist_ok=True)
    server: Server | Remote = remote or _started(opts, out)
    try:
        seed_path = seed(server, opts, out)
        killer = threading.Timer(opts.kill_one_after_s, server.fleet.kill_one) \
            if opts.kill_one_after_s and isinstance(server, Server) and server.fleet else None
        if killer is not None:
            killer.start()
        started = time.monotonic()
        code, gen_cpu = run_locust(opts, server.url, workload_arguments(opts, seed_path, out),
                                   out)
        wall = time.monotonic() - started
        if killer is not None:
            killer.cancel()
        records_by = usage_records(server, seed_path)
        records = [i for ids in records_by.values() for i in ids]
        settlements = settlement_check(server)
        bookings = booking_check(server, seed_path, out, opts.users)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what was written stays, marked
        (out / INTERRUPTED).write_text(
            "This run was stopped before its end (Ctrl-C or SIGTERM): the files here are "
            "what it had written by then; no record check was made and no summary.json "
            "written.\n")
        raise
    finally:
        server_stats = server.stop()
    rows = locust_rows(out)
    ok_verifies = sum(rows.get(n, {}).get("requests", 0) - rows.get(n, {}).get("failures", 0)
                      for n in HOT)
    seen = [i for f in out.glob("record-ids-*.json") for i in json.loads(f.read_text())]
    held = set(records)
    check = {
        "usage_records": len(records),
        "successful_verifies_locust": ok_verifies,
        "record_ids_reported": len(seen),
        "duplicates": len(seen) - len(set(seen)),
        "missing_on_server": len(set(seen) - held),
        # the server finished requests Locust had abandoned at stop: at most one per user
        "in_flight_at_stop": len(held - set(seen)),
    }
    check["ok"] = (check["duplicates"] == 0 and check["missing_on_server"] == 0
                   and len(seen) == ok_verifies and check["in_flight_at_stop"] <= opts.users)
    server_verify_2xx = server_stats["routes"].get("verify", {}).get("by_status", {}).get("2xx", 0)
    # the servers' own counts cover every server only when none was killed (a killed
    # server's statistics go with it) and they run here
    counted = isinstance(server, Server) and not server.killed
    gen_procs = max(1, opts.distributed_workers or opts.processes)
    gen_share = gen_cpu / (wall * gen_procs) if wall > 0 else 0.0
    slo_path = out / "slo.json"
    slo = json.loads(slo_path.read_text()) if slo_path.exists() else None
    summary = {
        "options": {k: (str(v) if isinstance(v, Path) else v)
                    for k, v in opts.__dict__.items() if k not in ("slo", "out")},
        "slo_limits": opts.slo.__dict__,
        "slo": slo,
        "locust_exit_code": code,
        "locust": rows,
        "server": server_stats,
        "records": check,
        "verify_2xx_server": server_verify_2xx,
        "records_match": check["ok"] and (server_verify_2xx == len(records) or not counted)
        and bookings["ok"],
        "server_counts_checked": counted,
        "servers": {"processes": opts.servers, "killed": server.fleet.killed
                    if isinstance(server, Server) and server.fleet else [],
                    "target": opts.target,
                    "records_by_server": records_by_server(seed_path, records_by)},
        "weights": weights_for(opts),
        "settlements": settlements,
        "bookings": bookings,
        "generator": {"cpu_seconds": gen_cpu, "wall_seconds": wall, "processes": gen_procs,
                      "cpu_share": gen_share,
                      "saturated": gen_share > SATURATED},
    }
    if summary["generator"]["saturated"]:
        summary["warning"] = (f"the load generator used {gen_share:.0%} of its CPU: its "
                              "latencies include its own queueing; add --processes")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    final = code if summary["records_match"] and settlements["clean"] else max(code, 2)
    return final, {"out": str(out), **summary}
