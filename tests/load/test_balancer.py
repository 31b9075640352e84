"""The card network scaled out for real: two `ehc serve` processes on one store behind
HAProxy, run with the operator's own ``deploy/haproxy.cfg``. One server is killed in the
middle of a Locust run: the other serves the clients, every verification Locust saw
acknowledged left exactly one usage record, and nothing beyond the requests in flight at
the kill was recorded unseen. Also a load test against a deployment that runs already
(``--target``), and the clear refusals of impossible combinations. SQLite, and PostgreSQL
when ``EHC_TEST_DATABASE_URL`` is set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from loadtests.fleet import Fleet, haproxy_binary
from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.sdk import prepare_store, spawn_server, stop_server
from tests.load.test_loadtest import ehc_loadtest, loadtest_summary
from tests.stack import PG_ENV, free_port

# measures a server's load (or kills one under it): alone, not beside xdist's workers
pytestmark = pytest.mark.serial

needs_haproxy = pytest.mark.skipif(haproxy_binary() is None, reason="HAProxy not installed "
                                   "(Debian: apt-get install haproxy); .ci/run installs it")


def backends() -> list[str]:
    return ["sqlite"] + (["postgres"] if os.environ.get(PG_ENV) else [])


@needs_haproxy
@pytest.mark.parametrize("backend", backends())
def test_killing_one_server_behind_the_balancer_loses_no_record(tmp_path: Path,
                                                                backend: str) -> None:
    db = ["--database-url", os.environ[PG_ENV]] if backend == "postgres" else []
    s = loadtest_summary(tmp_path / "lb", 0, "--servers", "2", "--kill-one-after", "5",
                         "--duration", "12", "--users", "8", "--mix", "terminal", *db)
    assert {k: s["servers"][k] for k in ("processes", "killed", "target")} == {
        "processes": 2, "killed": [0], "target": None}
    # the users took the servers in turn: each server's institutions wrote a fair share
    # of the records (the hash sends 3 of the seed's 11 hospitals to s1)
    by_server = s["servers"]["records_by_server"]
    assert set(by_server) == {"s1", "s2"}
    assert min(by_server.values()) >= 0.35 * sum(by_server.values()), by_server
    r = s["records"]
    assert r["ok"] and r["missing_on_server"] == 0 and r["duplicates"] == 0
    assert r["successful_verifies_locust"] > 300
    # unseen records are only those of requests in flight on the killed server
    assert r["in_flight_at_stop"] <= 8
    verify = s["locust"]["verify"]
    assert verify["failures"] <= 8  # at most the requests in flight at the kill
    # the survivor served the clients: its own count of verifications (the killed
    # server's went with it) is a large part of all of them
    survivor = s["server"]["routes"]["verify"]["by_status"]["2xx"]
    assert s["server"]["workers"] == 1 and survivor > verify["requests"] / 3
    assert s["records_match"] and not s["server_counts_checked"]


@needs_haproxy
def test_the_balancer_sends_an_institutions_terminals_to_one_server(tmp_path: Path) -> None:
    """``deploy/haproxy.cfg``: every terminal of an institution (its key: the 12-character
    institution code and a department) reaches the same server, the institutions and the
    channel apps spread over both; with that server gone, its institutions move to the
    other. Read from the header the balancer adds (``x-ehc-served-by``)."""
    var = tmp_path / "var"
    prepare_store(Settings(var_dir=var))
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING"}
    bind = free_port()
    fleet = Fleet(env, [free_port(), free_port()], bind, ["--log-level", "warning"])
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{bind}") as client:
            def served(key: str) -> str:
                answer = client.get("/ping", headers={"x-ehc-key": key})
                assert answer.status_code == 200
                return answer.headers["x-ehc-served-by"]

            # a province's codes: city (4 digits), district, kind, serial
            institutions = [f"33{city:02d}{district:02d}H{n:05d}" for city in range(1, 12)
                            for district in range(1, 4) for n in range(1, 7)]
            by_institution = {inst: {served(inst + f"{dept:04d}") for dept in range(3)}
                              for inst in institutions}
            assert all(len(servers) == 1 for servers in by_institution.values())
            shares = Counter(next(iter(servers)) for servers in by_institution.values())
            assert min(shares["s1"], shares["s2"]) >= 0.35 * len(institutions), shares
            apps = {served("app_" + f"{n:016x}") for n in range(3) for _ in range(20)}
            assert apps == {"s1", "s2"}  # one app's refreshes spread, not pinned
            fleet.kill_one()  # s1
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(
                    served(inst + "0001") != "s2" for inst in institutions):
                time.sleep(0.2)
            assert {served(inst + "0001") for inst in institutions} == {"s2"}
    finally:
        fleet.stop()


@needs_haproxy
@pytest.mark.slow
def test_distributed_generators_spread_their_users_over_the_servers(tmp_path: Path) -> None:
    """A master and two Locust workers, three scanning users each, against two servers:
    each worker's users take the servers in turn from its own index on, so the servers
    meet three users each (not four and two) and their institutions write a fair share
    of the records, however the hash split the seed's hospitals."""
    s = loadtest_summary(tmp_path / "dist", 0, "--servers", "2", "--distributed", "2",
                         "--users", "6", "--duration", "6", "--mix", "terminal")
    assert s["records_match"]
    by_server = s["servers"]["records_by_server"]
    assert min(by_server.values()) >= 0.4 * sum(by_server.values()), by_server


@pytest.mark.slow
def test_a_running_deployment_is_a_target(tmp_path: Path) -> None:
    var = tmp_path / "var"
    token = prepare_store(Settings(var_dir=var))
    port = free_port()
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
           "EHC_RATE_LIMIT_TERMINAL_PER_S": "1e9", "EHC_RATE_LIMIT_APP_PER_S": "1e9"}
    server = spawn_server(env, port)
    try:
        assert deployment_secret(Settings(var_dir=var), "admin_token") == token
        s = loadtest_summary(tmp_path / "t", 0, "--target", f"http://127.0.0.1:{port}",
                             "--admin-token", token, "--duration", "5", "--users", "4")
        wrong = ehc_loadtest(tmp_path / "w", "--target", f"http://127.0.0.1:{port}",
                             "--admin-token", "not-" + token, "--duration", "2")
    finally:
        stop_server(server)
    assert s["servers"]["target"] == f"http://127.0.0.1:{port}"
    assert s["records"]["ok"] and s["records"]["successful_verifies_locust"] > 20
    assert s["bookings"]["ok"] and s["settlements"]["clean"]
    # a token the deployment refuses: its refusal in one line, nothing run
    assert wrong.returncode == 2 and "--target" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr and not any((tmp_path / "w").iterdir())


def test_impossible_combinations_are_refused(tmp_path: Path) -> None:
    for args, says in ((["--kill-one-after", "3"], "--servers 2"),
                       (["--target", "http://127.0.0.1:9"], "--admin-token"),
                       (["--target", "http://127.0.0.1:9", "--admin-token", "x", "--servers",
                         "2"], "--servers"),
                       (["--mix", "nonsense"], "--mix"),
                       (["--target", "http://127.0.0.1:9", "--admin-token", "x"],
                        "cannot reach")):
        res = ehc_loadtest(tmp_path / "x", *args)
        assert res.returncode == 2 and says in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr


@needs_haproxy
@pytest.mark.slow
def test_capacity_per_server_count(tmp_path: Path) -> None:
    """``ehc loadtest capacity --servers 1,2`` measures a knee and the server CPU per scan
    for one server and for two behind the balancer, each configuration on its own."""

    res = subprocess.run([sys.executable, "-m", "twin.cli", "loadtest", "capacity", "--rates",
                          "10", "--workers", "1", "--servers", "1,2", "--step-duration", "3",
                          "--slo-p95-ms", "5000", "--slo-p99-ms", "10000",
                          "--province-peaks", str(tmp_path / "none.json"),
                          "--out", str(tmp_path / "cap")],
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    cap = json.loads((tmp_path / "cap" / "capacity.json").read_text())
    verify = {k["servers"]: k for k in cap["knees"] if k["route"] == "verify"}
    assert set(verify) == {1, 2}
    for k in verify.values():
        assert k["knee_rps"] == 10 and 10 < k["server_cpu_us_per_scan"] < 1e6
    assert "2 server(s) x 1 worker(s), verify: knee 10/s" in res.stdout
    scale = [g for g in cap["goals"] if g["goal"].startswith("CPU per scan")]
    assert len(scale) == 1 and scale[0]["ratio_at_knees"] == (
        verify[2]["server_cpu_us_per_scan"] / verify[1]["server_cpu_us_per_scan"])
    # one rate offered: no pair of one server at R and two at 2R, and the report says so
    assert scale[0]["ratio"] is None and scale[0]["met"] is None
    assert "goal CPU per scan" in res.stdout and "offer rates R and 2R" in res.stdout
    bad = subprocess.run([sys.executable, "-m", "twin.cli", "loadtest", "capacity",
                          "--servers", "3"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--servers" in bad.stderr


@needs_haproxy
def test_the_scale_out_bench_compares_both_configurations_at_one_rate(tmp_path: Path) -> None:
    """``bench.bench_scaleout`` at a tiny size: every phase served what was offered,
    nothing failed, the ratio it reports is the two phases' CPU per scan, and its parts
    (the host, the shared store, the balancer) multiply to it in each round."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != PG_ENV}  # SQLite only: small
    run = subprocess.run([sys.executable, "-m", "bench.bench_scaleout", "--rate", "20",
                          "--phase-s", "3", "--rounds", "1", "--residents", "30"],
                         cwd=tmp_path, env={**env, "PYTHONPATH": str(root)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads((tmp_path / "results" / "bench" / "scaleout.json").read_text())
    r = result["sqlite"]
    (done,) = r["rounds"]
    assert done["one"]["scans"] >= 0.9 * 20 * 3
    for phase in ("two", "pair", "apart"):  # R to each of two servers
        assert done[phase]["scans"] >= 0.9 * 40 * 3, phase
    assert all(done[c]["kept_up"] for c in ("one", "two", "pair", "apart"))
    assert r["failures"] == 0
    assert r["ratio"] == pytest.approx(done["two"]["server_cpu_us_per_scan"]
                                       / done["one"]["server_cpu_us_per_scan"])
    assert r["ratio"] == pytest.approx(r["host"] * r["store"] * r["balancer"])
    assert r["store"] == pytest.approx(done["pair"]["server_cpu_us_per_scan"]
                                       / done["apart"]["server_cpu_us_per_scan"])
    assert r["met"] == (r["ratio"] <= 1.2)
    assert "over one at 20/s: median" in run.stdout
    assert "one shared store over stores of their own (pair / apart)" in run.stdout
