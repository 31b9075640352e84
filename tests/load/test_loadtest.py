"""Locust against the real stack: SLO gate both ways, server records against Locust's
count, shapes, distributed master and workers."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from loadtests import shapes
from loadtests.workload import Seed

# measures a server's load (or kills one under it): alone, not beside xdist's workers
pytestmark = pytest.mark.serial


def test_shapes() -> None:
    c = shapes.constant(5, 10)
    assert c(0) == 5 and c(9.9) == 5 and c(10) is None
    s = shapes.step(2, 3, 5, 4)
    assert [s(t) for t in (0, 5, 10, 15)] == [2, 5, 8, 11] and s(20) is None
    sp = shapes.spike(2, 20, 10, 5, 30)
    assert (sp(9), sp(10), sp(14.9), sp(15), sp(30)) == (2, 20, 20, 2, None)
    with pytest.raises(ValueError, match="unknown shape"):
        shapes.from_options("zigzag", users=1, duration_s=1)


def test_demand_shape_replays_the_curve(tmp_path: Path) -> None:
    csv = tmp_path / "demand.csv"
    rows = ["second,clock,verify,refresh,settlement,payment,total"]
    for sec in range(86_400):
        rate = 10 if 36_000 <= sec < 36_600 else (40 if 36_600 <= sec < 37_200 else 0)
        rows.append(f"{sec},x,{rate},0,0,0,{rate}")
    csv.write_text("\n".join(rows))
    shape = shapes.demand_curve(csv, compress=60, scale=0.5, rate_per_user=1)
    assert shape(0) == 5 and shape(9) == 5  # first 600 s of the day: 10/s x 0.5
    assert shape(10) == 20  # then 40/s x 0.5
    assert shape(20) is None  # 1200 busy seconds / 60 = 20 s of test


LENIENT = ["--slo-p95-ms", "5000", "--slo-p99-ms", "10000"]  # mechanics, not speed: CI is shared


def ehc_loadtest(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twin.cli", "loadtest", "--residents", "30",
                           "--out", str(out), *LENIENT, *args], capture_output=True,
                          text=True, timeout=300)


def loadtest_summary(out: Path, exit_code: int, *args: str) -> dict:
    """Run ``ehc loadtest`` into ``out``, check its exit code, read its summary."""
    res = ehc_loadtest(out, *args)
    assert res.returncode == exit_code, res.stdout[-2000:] + res.stderr[-2000:]
    assert "Traceback" not in res.stdout + res.stderr
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_short_run_passes_and_every_success_left_one_record(tmp_path: Path) -> None:
    s = loadtest_summary(tmp_path / "ok", 0, "--users", "13", "--duration", "8",
                         "--bad-share", "0.2")
    assert s["slo"]["passed"] and s["records_match"]
    r = s["records"]
    assert r["successful_verifies_locust"] > 50
    assert r["missing_on_server"] == 0 and r["duplicates"] == 0
    assert r["usage_records"] == r["successful_verifies_locust"] + r["in_flight_at_stop"]
    names = set(s["locust"])
    assert {"verify", "refresh code", "verify [tampered]", "refresh fused code",
            "verify fused", "settle upload", "settle", "book", "queue place",
            "reports", "verify pharmacy", "pharmacy settle upload", "pharmacy settle"
            } <= names, names
    assert s["weights"] == {"terminal": 6, "fused": 3, "settle": 1, "app": 1, "kiosk": 1,
                            "retail": 1}
    b = s["bookings"]  # every acknowledged booking on the server, once
    assert b["ok"] and b["duplicates"] == 0 and b["bookings_acknowledged"] > 0
    assert b["bookings_acknowledged"] <= b["bookings_on_server"]
    assert s["settlements"]["clean"] and s["settlements"]["by_state"].get("settled", 0) > 0
    assert all(v["failures"] == 0 for v in s["locust"].values())  # bad codes refused as due
    assert s["server"]["routes"]["verify"]["count"] >= s["locust"]["verify"]["requests"]
    for f in ("report.html", "locust_stats.csv", "locust.json", "slo.json", "seed.json"):
        assert (tmp_path / "ok" / f).stat().st_size > 0


@pytest.mark.slow
def test_slo_gate_fails_with_exit_code_one(tmp_path: Path) -> None:
    s = loadtest_summary(tmp_path / "fail", 1, "--users", "3", "--duration", "4",
                         "--slo-p95-ms", "0.001")
    assert not s["slo"]["passed"] and not s["slo"]["checks"]["p95_ms"]["ok"]
    assert s["records_match"]  # the gate failed on latency, not on lost records


@pytest.mark.slow
def test_master_and_two_workers(tmp_path: Path) -> None:
    s = loadtest_summary(tmp_path / "dist", 0, "--users", "4", "--duration", "6",
                         "--distributed", "2", "--shape", "step")
    assert s["generator"]["processes"] == 2 and s["records_match"]
    assert len(list((tmp_path / "dist").glob("record-ids-*.json"))) == 3  # master + 2


def test_mix_in_the_demand_curves_proportions(tmp_path: Path) -> None:
    from loadtests import mix

    csv = tmp_path / "demand.csv"
    csv.write_text("second,clock,verify,refresh,settlement,payment,total\n"
                   "0,00:00:00,600,300,50,20,970\n1,00:00:01,400,200,50,30,680\n")
    # V=1000, R=500, S=100: plain scans 500, fused 400, settle 100
    assert mix.from_demand(csv) == {"terminal": 50, "fused": 40, "settle": 10, "app": 0,
                                    "kiosk": 0, "retail": 0}  # a curve without kiosk calls
    csv.write_text("second,clock,verify,refresh,settlement,payment,kiosk,total\n"
                   "0,00:00:00,1000,500,100,50,300,1950\n")
    assert mix.from_demand(csv) == {"terminal": 45, "fused": 36, "settle": 9, "app": 0,
                                    "kiosk": 9, "retail": 0}  # 300 calls: 100 visits of three
    # 60 of the scans (and of the settlements) at retail pharmacies: their own users
    csv.write_text("second,clock,verify,refresh,settlement,payment,kiosk,retail,total\n"
                   "0,00:00:00,1000,500,100,50,300,60,1950\n")
    assert mix.from_demand(csv) == {"terminal": 45, "fused": 36, "settle": 4, "app": 0,
                                    "kiosk": 9, "retail": 5}
    assert mix.decode(mix.encode({"terminal": 1})) == {
        "terminal": 1, "fused": 0, "settle": 0, "app": 0, "kiosk": 0, "retail": 0}
    with pytest.raises(ValueError):
        mix.decode("robots:3")


def test_a_file_that_is_no_demand_curve_is_refused_before_anything_starts(
        tmp_path: Path) -> None:
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "quiet.csv").write_text("second,verify,refresh,settlement,total\n0,0,0,0,0\n")
    for name, says in (("other.csv", "no column verify, refresh, settlement"),
                       ("binary.csv", ": not a "), ("quiet.csv", "no verifications")):
        res = ehc_loadtest(tmp_path / "never", "--shape", "demand", "--mix", "demand",
                           "--demand-csv", str(tmp_path / name))
        assert res.returncode == 2 and says in res.stderr, (name, res.stderr)
        assert "Traceback" not in res.stderr and not (tmp_path / "never").exists()


@pytest.mark.slow
def test_a_run_in_the_demand_curves_mix(tmp_path: Path) -> None:
    """Fused scans and settlements dominate this curve: the SLO gate covers the fused
    verifications, and settlements are reconciled."""
    csv = tmp_path / "demand.csv"
    csv.write_text("second,clock,verify,refresh,settlement,payment,total\n"
                   "0,00:00:00,100,90,30,20,240\n")
    s = loadtest_summary(tmp_path / "mix", 0, "--users", "10", "--duration", "6", "--mix",
                         "demand", "--demand-csv", str(csv), "--bad-share", "0")
    assert s["weights"] == {"terminal": 10, "fused": 60, "settle": 30, "app": 0, "kiosk": 0,
                            "retail": 0}
    assert s["slo"]["hot_request"] == "verify + verify fused + verify pharmacy"
    assert s["slo"]["passed"]
    assert s["locust"]["verify fused"]["requests"] > s["locust"].get(
        "verify", {"requests": 0})["requests"]
    assert s["settlements"]["clean"] and s["settlements"]["by_state"].get("settled", 0) > 0
    assert s["records_match"]


def test_bad_options_are_refused_cleanly(tmp_path: Path) -> None:
    res = ehc_loadtest(tmp_path / "x", "--shape", "demand")
    assert res.returncode == 2 and "needs --demand-csv" in res.stderr
    res = ehc_loadtest(tmp_path / "x", "--shape", "zigzag")
    assert res.returncode == 2 and "unknown shape" in res.stderr
    res = ehc_loadtest(tmp_path / "x", "--mix", "demand")
    assert res.returncode == 2 and "--mix" in res.stderr


def _in_session(sid: int) -> list[str]:
    """The live processes of a session (their command lines)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[3]) == sid and fields[0] != "Z":  # session; not a zombie
            alive.append(cmdline)
    return alive


def test_a_terminated_load_test_stops_its_servers_and_locust(tmp_path: Path) -> None:
    """SIGTERM to ``ehc loadtest`` alone (``kill``, ``timeout``, a CI job's end) stops it
    as Ctrl-C does: its server and Locust went on as orphans, the server for good. Its
    folder keeps what it had written, marked partial, and it says so (exit 130)."""
    import signal

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "loadtest", "--residents", "30",
                             "--users", "2", "--duration", "120", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "seed.json").exists() or len(_in_session(proc.pid)) < 3:
            assert time.monotonic() < deadline and proc.poll() is None, "never started"
            time.sleep(0.2)  # ehc, its server and Locust
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
        # what it had written stays, marked partial, and it says where
        assert "interrupted" in err and str(out) in " ".join(err.split()), err[-2000:]
        assert (out / "INTERRUPTED.txt").exists() and not (out / "summary.json").exists()
        deadline = time.monotonic() + 10
        while _in_session(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _in_session(proc.pid)
    finally:
        if proc.poll() is None or _in_session(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("option", [["--rates", "0"], ["--rates", "200,100"],
                                    ["--rates", "50,nan"], ["--workers", "0"],
                                    ["--rates", "fast"]])
def test_capacity_refuses_rates_it_cannot_step_through(tmp_path: Path,
                                                       option: list[str]) -> None:
    """A rate of 0 ran a step and printed a 'knee of 0/s'; falling rates a search that
    stops at the first; no worker, a server that never starts."""
    res = subprocess.run([sys.executable, "-m", "twin.cli", "loadtest", "capacity", *option,
                          "--out", str(tmp_path / "cap")], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--rates takes rising numbers above 0" in res.stderr
    assert not (tmp_path / "cap").exists()


@pytest.mark.slow
def test_capacity_steps_find_a_knee_for_both_routes(tmp_path: Path) -> None:
    peaks = tmp_path / "peaks.json"
    peaks.write_text(json.dumps({"verify": {"peak_per_s": 30}}))
    # the periodic pulls (7 jobs, 40-60 ms of CPU every 5 s) would land in one step and not
    # the other: at 60 scans a step that is up to 1 ms a scan, more than the scan's own
    # cost; without them the server's idle cost is steady (about 4 ms/s) in every step
    quiet = {**os.environ, "EHC_SYNC_INTERVAL_S": "0"}
    res = subprocess.run([sys.executable, "-m", "twin.cli", "loadtest", "capacity", "--rates",
                          "100,200", "--workers", "1", "--step-duration", "3", "--slo-p95-ms",
                          "5000", "--slo-p99-ms", "10000",
                          "--province-peaks", str(peaks), "--out", str(tmp_path / "cap")],
                         capture_output=True, text=True, timeout=300, env=quiet)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    cap = json.loads((tmp_path / "cap" / "capacity.json").read_text())
    assert {k["route"] for k in cap["knees"]} == {"healthz", "verify"}
    assert all(k["knee_rps"] in (100, 200) for k in cap["knees"])  # both rates are easy
    assert cap["verify_per_core"] > 0 and cap["cores_needed"] >= 1
    assert {s["route"] for s in cap["steps"]} == {"healthz", "verify"}
    for k in cap["knees"]:  # measured from the server's own /proc counters
        assert 10 < k["server_cpu_us_per_scan"] < 1e6 and 0 < k["generator_cpu_share"] < 4
    verify = next(k for k in cap["knees"] if k["route"] == "verify")
    floor = next(k for k in cap["knees"] if k["route"] == "healthz")
    assert verify["server_cpu_us_per_scan"] > floor["server_cpu_us_per_scan"]
    (knee,) = cap["goals"]  # one server: the knees' goal only
    assert knee["ratio"] == verify["knee_rps"] / floor["knee_rps"]
    assert "goal scan knee / healthz knee" in res.stdout
    assert knee["ratio"] == 1 and knee["met"] is None  # both rates passed: no knee reached
    size = cap["sizing"]
    assert size["cores_at_60k"] == math.ceil(30_000 * 2 / cap["verify_per_core"])
    assert size["servers_at_60k"] == math.ceil(size["cores_at_60k"] / 16)
    assert size["cores_at_peak"] == cap["cores_needed"] and "linear" in size["assumptions"]
    assert "60,000 requests/s" in res.stdout and "Extrapolated" in res.stdout


def test_the_capacity_goals_say_what_the_knees_allow() -> None:
    """A knee no offered rate broke is only a lower bound: the ratio of knees is then
    a bound too, and the goal is met, missed or not measured as the bound allows."""
    from loadtests.capacity import goal_line, goals

    def knees(scan: float, scan_open: bool, ping: float, ping_open: bool,
              cpu2: float | None = None) -> list[dict]:
        base = {"database": "sqlite", "server_workers": 1}
        out = [{**base, "servers": 1, "route": "verify", "knee_rps": scan,
                "knee_is_lower_bound": scan_open, "server_cpu_us_per_scan": 500.0},
               {**base, "servers": 1, "route": "healthz", "knee_rps": ping,
                "knee_is_lower_bound": ping_open, "server_cpu_us_per_scan": 100.0}]
        if cpu2:
            out.append({**base, "servers": 2, "route": "verify", "knee_rps": scan,
                        "knee_is_lower_bound": scan_open, "server_cpu_us_per_scan": cpu2})
        return out

    def met(*args) -> list:
        return [g["met"] for g in goals(knees(*args))]
    assert met(400, False, 1600, False) == [False]
    assert met(800, False, 1600, False) == [True]
    assert met(800, False, 1600, True) == [None]  # ping could go higher: at most 0.5
    assert met(400, False, 1600, True) == [False]  # already under a third
    assert met(400, True, 1600, False) == [None] and met(800, True, 1600, False) == [True]
    assert met(800, True, 1600, True) == [None]
    line = goal_line(goals(knees(400, False, 1600, True))[0])  # the printed ratio a bound
    assert ": at most 0.25 (limit >= 0.33): NOT met" in line, line
    assert ": at least 0.50 (limit >= 0.33): met" in goal_line(
        goals(knees(800, True, 1600, False))[0])
    assert ": 0.25 (limit >= 0.33): NOT met" in goal_line(
        goals(knees(400, False, 1600, False))[0])
    # beside the knees, what the CPU a request says a core-bound server's would be:
    # 100 us a /healthz against 500 a scan
    unbounded = goals(knees(800, False, 1600, True))[0]
    assert unbounded["met"] is None and unbounded["cpu_ratio"] == 0.2
    assert unbounded["met_by_cpu"] is False
    assert "a server whose core is the limit: 0.20 (NOT met by that estimate)" in \
        goal_line(unbounded)
    scale = goals(knees(800, False, 1600, False, 650.0))[-1]
    assert scale["goal"].startswith("CPU per scan") and scale["ratio_at_knees"] == 1.3
    assert scale["ratio"] is None and scale["met"] is None  # no steps: no rate to compare
    assert "not measured" in goal_line(scale)


def test_scale_out_is_compared_where_each_server_takes_the_same_rate() -> None:
    """Two servers at 2R against one at R, the highest such pair both served: that
    isolates what shared state adds; at their knees each of two servers takes less than
    one did (fewer scans share a commit), which the report shows beside it."""
    from loadtests.capacity import goal_line, goals

    def step(servers: int, rate: float, cpu: float, ok: bool = True) -> dict:
        return {"route": "verify", "database": "sqlite", "server_workers": 1,
                "servers": servers, "offered_rps": rate, "server_cpu_us_per_scan": cpu,
                "slo_passed": ok, "kept_up": ok}
    steps = [step(1, 200, 1000), step(1, 400, 900), step(1, 800, 800),
             step(2, 200, 1500), step(2, 400, 1100), step(2, 800, 1200, ok=False)]
    knees = [{"database": "sqlite", "server_workers": 1, "servers": n, "route": "verify",
              "knee_rps": rate, "knee_is_lower_bound": False, "server_cpu_us_per_scan": cpu}
             for n, rate, cpu in ((1, 800, 800), (2, 400, 1100))]
    (scale,) = goals(knees, steps)
    assert scale["two_servers_rps"] == 400 and scale["ratio"] == 1100 / 1000
    assert scale["met"] is True and scale["ratio_at_knees"] == 1100 / 800
    line = goal_line(scale)
    assert "1.10 (limit <= 1.2): met" in line and "at the knees 1.38" in line
    assert "bench.bench_scaleout" in line  # where the goal is measured against noise
    steps[0] = step(1, 200, 800)  # one server cheaper at half the rate: missed
    (scale,) = goals(knees, steps)
    assert scale["ratio"] == 1100 / 800 and scale["met"] is False
    # a pair whose step had the host's cores busy (generator, servers and store on the
    # same cores) is shown, not judged: the highest calm pair is
    steps[0], steps[4] = step(1, 200, 1000), step(2, 400, 1100) | {"host_cpu_share": 0.95}
    steps.append(step(1, 100, 1000))
    (scale,) = goals(knees, steps)
    assert scale["two_servers_rps"] == 200 and scale["ratio"] == 1500 / 1000
    assert scale["met"] is False and scale["host_busy_ratio"] == 1100 / 1000
    assert "two servers at 200/s against one at 100/s" in goal_line(scale)
    steps[3] |= {"host_cpu_share": 0.5}  # the judged pair's, where it was read
    assert "against one at 100/s (the host's cores 50% busy)" in goal_line(
        goals(knees, steps)[0])
    assert "at 400/s against 200/s 1.10, not judged: the host's cores 95% busy" in \
        goal_line(scale)
    (scale,) = goals(knees, steps[:-1])  # no calm pair left
    assert scale["ratio"] is None and "under 85% busy" in goal_line(scale)


def test_a_step_reads_how_busy_the_hosts_cores_were() -> None:
    from loadtests.capacity import busy_share, host_jiffies

    before = host_jiffies()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # one core busy
        pass
    share = busy_share(before, host_jiffies())
    assert share is not None and 1 / (os.cpu_count() or 1) * 0.5 <= share <= 1.0
    assert busy_share((5, 10), (5, 10)) is None and busy_share(None, (1, 2)) is None
    assert busy_share((10, 100), (40, 200)) == 0.3


PARSE = """
import importlib.util, json, sys
from locust.argument_parser import parse_options
spec = importlib.util.spec_from_file_location("ehc_locustfile", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))  # adds the --ehc-* options
opts = parse_options(["-f", sys.argv[1], *sys.argv[2:]])
print(json.dumps({k: v for k, v in vars(opts).items() if k.startswith("ehc_")}))
"""


def test_workload_options_are_locust_options() -> None:
    """The workload is configured through Locust's own parser (the ``--ehc-*`` options the
    locustfile adds; Locust hands them to its workers), and nothing is read from EHC_*
    variables at import time. (A process of its own: Locust patches the interpreter.)"""
    import json
    import subprocess
    import sys

    from loadtests.runner import LOCUSTFILE, locust_env

    run = subprocess.run([sys.executable, "-c", PARSE, str(LOCUSTFILE), "--ehc-weights",
                          "terminal:2,fused:0,settle:0,app:1", "--ehc-shape", "step",
                          "--ehc-slo-p95-ms", "150"],
                         env=locust_env(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    opts = json.loads(run.stdout.strip().splitlines()[-1])
    assert (opts["ehc_weights"], opts["ehc_shape"], opts["ehc_slo_p95_ms"]) == (
        "terminal:2,fused:0,settle:0,app:1", "step", 150.0)
    assert opts["ehc_seed_file"] == "var/seed.json" and opts["ehc_workload"] == "scan"
    source = LOCUSTFILE.read_text()
    assert "os.environ" not in source and "EHC_" not in source


def test_a_knee_between_two_rates_is_narrowed_by_bisection() -> None:
    """Between a rate that passed and one that failed, each refining step is offered at
    the midpoint; the knee is the highest rate that passed (a doubling ladder's 800 is
    1,400 here after three steps), and no step repeats a rate already offered."""
    from loadtests.capacity import refined_knee

    offered: list[float] = []

    def passes(rate: float) -> bool:  # this server keeps up to 1,450/s
        offered.append(rate)
        return rate <= 1450

    assert refined_knee(passes, 800, 1600, 3) == 1400
    assert offered == [1200, 1400, 1500]
    offered.clear()
    assert refined_knee(passes, 800, 1600, 0) == 800 and offered == []
    assert refined_knee(passes, 100, 101, 5) == 100 and offered == []  # no whole rate between


def test_a_knee_the_generator_may_have_set_is_a_lower_bound() -> None:
    """A knee is exact only when the step that broke the SLO above it had a generator
    with CPU to spare; broken with the generator saturated (or never broken), the
    server's knee is at least this."""
    from loadtests.capacity import _lower_bound

    def step(rate: float, passed: bool, generator: float) -> dict:
        return {"offered_rps": rate, "slo_passed": passed, "kept_up": passed,
                "generator_cpu_share": generator}

    knee = step(4000, True, 0.91)
    assert _lower_bound(knee, [knee, step(5200, False, 1.0)])
    assert not _lower_bound(knee, [knee, step(5200, False, 0.6)])
    assert not _lower_bound(knee, [knee, step(6400, False, 1.0), step(5200, False, 0.6)])
    assert _lower_bound(knee, [step(2000, True, 0.5), knee])  # nothing broke it
    assert not _lower_bound(None, [step(800, False, 0.5)])  # no knee at all


def test_scanning_users_take_the_balancers_servers_in_turn() -> None:
    """Where the seed knows which server each institution's terminals go to, the users
    fall evenly on the servers however unevenly the institutions split (here 1 : 3); on
    one server (nothing known) a terminal is drawn among all."""
    def terminal(n: int, server: str | None) -> dict:
        return {"terminal_id": f"T{n}", "served_by": server}

    split = [terminal(0, "s1")] + [terminal(n, "s2") for n in range(1, 4)]
    seed = Seed(None, split, {}, [], [], [], {}, [])
    rng = random.Random(1)
    picked = Counter(seed.terminal_for(turn, rng)["served_by"] for turn in range(100))
    assert picked == {"s1": 50, "s2": 50}
    alone = Seed(None, [terminal(n, None) for n in range(4)], {}, [], [], [], {}, [])
    assert {alone.terminal_for(turn, rng)["terminal_id"] for turn in range(100)} == {
        "T0", "T1", "T2", "T3"}
