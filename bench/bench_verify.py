"""Hot path: POST /ehc/v1/qrcodes/verify against the trivial GET /ping of the same app,
one uvicorn worker (uvloop + httptools), the same load generator (wrk), the same run.
The verify route is served by the fast path below FastAPI (``services.common.fastpath``);
``/ping`` is an ordinary FastAPI route, and ``/healthz`` is the bare floor of the fast path
(a trivial route served exactly as verify is), reported for transparency.

Verify requests are made and signed beforehand (fresh dynamic codes from the channel API,
each verified up to its replay limit, one nonce per request) and replayed by wrk from a
file. Two figures per route: requests/s at the generator, and requests per second of
*server CPU* (from /proc), the server's own cost per request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.common.signing import sign_headers
from services.sdk import (
    ChannelClient,
    cpu_seconds,
    cst_now_text,
    seed_stack,
    spawn_server,
    stop_server,
)

from .common import save

HERE = Path(__file__).parent
CONNECTIONS = 32
DURATION_S = 5
VERIFY_REQUESTS = 40_000  # more than wrk sends in DURATION_S (checked: errors would show)
LIMIT = 3  # verifications one dynamic code allows (the default setting)


def wrk(url: str, path: str, script: Path | None, env: dict, pid: int,
        duration_s: int = DURATION_S) -> dict:
    cmd = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--latency", url + path]
    if script:
        cmd[1:1] = ["-s", str(script)]
    cpu0 = cpu_seconds(pid)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    cpu = cpu_seconds(pid) - cpu0
    count = re.search(r"(\d+) requests in", out)
    if count is None:
        raise RuntimeError(f"wrk printed no request count:\n{out}")
    total = int(count.group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    errors += sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    p99 = re.search(r"99%\s+(\S+)", out)
    return {"requests": total, "errors": errors, "rps": total / duration_s,
            "server_cpu_s": cpu, "per_server_cpu_s": total / cpu if cpu else float("nan"),
            "server_us_per_request": cpu / total * 1e6 if total else float("nan"),
            "p99": p99.group(1) if p99 else None}


def fresh_codes(url: str, seed: dict, n: int) -> list[str]:
    """n dynamic codes from the channel API, fetched on 4 threads (codes live 60 s)."""
    app_cred = seed["channel_apps"][0]
    cards = seed["cards"]

    def chunk(k: int) -> list[str]:
        with ChannelClient(url, app_cred["app_key"], app_cred["app_secret"]) as app:
            return [app.qrcode(cards[i % len(cards)]["card_id"])["qr_text"]
                    for i in range(k, n, 4)]

    with ThreadPoolExecutor(4) as pool:
        return [c for part in pool.map(chunk, range(4)) for c in part]


def signed_requests(url: str, seed: dict, n: int, path: Path) -> None:
    inst = seed["institutions"][0]
    term = inst["terminals"][0]
    with path.open("w") as fh:
        for code in fresh_codes(url, seed, n // LIMIT + 1):
            for _ in range(LIMIT):
                body = orjson.dumps({
                    "qr_text": code, "terminal_id": term["terminal_id"],
                    "institution_code": inst["code"], "institution_name": inst["name"],
                    "city_code": inst["city_code"], "terminal_type": term["terminal_type"],
                    "step": 10101, "time": cst_now_text()})
                h = sign_headers(term["terminal_id"], "POST", "/ehc/v1/qrcodes/verify", body,
                                 secret=term["secret"])
                fh.write("\t".join((h["X-EHC-Key"], h["X-EHC-Timestamp"], h["X-EHC-Nonce"],
                                    h["X-EHC-Signature"], body.decode())) + "\n")


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench_verify needs wrk (Debian: apt-get install wrk)")
    var = Path(tempfile.mkdtemp(prefix="ehc-bench-"))
    # the limiter still runs on every request; only its threshold is out of reach
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
           # a few terminals send thousands a second: no rate limit (with one, each scan
           # also reads at most 2 x limit index entries of its bucket; not measured here)
           "EHC_RATE_LIMIT_TERMINAL_PER_S": "0", "EHC_RATE_LIMIT_APP_PER_S": "0"}
    port = 18765
    server = spawn_server(env, port, "--log-level", "warning", "--no-access-log",
                          "--loop", "uvloop", "--http", "httptools",
                          stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        token = deployment_secret(Settings(var_dir=var), "admin_token")
        seed = seed_stack(url, token, 200)
        results = {"ping": wrk(url, "/ping", None, env, server.pid),
                   "healthz": wrk(url, "/healthz", None, env, server.pid)}
        for name, count, secs in (("verify_warmup", 3000, 1), ("verify", VERIFY_REQUESTS,
                                                                   DURATION_S)):
            reqs = var / f"{name}.tsv"
            signed_requests(url, seed, count, reqs)
            env["EHC_BENCH_REQUESTS"] = str(reqs)
            results[name] = wrk(url, "/ehc/v1/qrcodes/verify", HERE / "verify.lua", env,
                                server.pid, secs)
        results["ping_again"] = wrk(url, "/ping", None, env, server.pid)
        results["healthz_again"] = wrk(url, "/healthz", None, env, server.pid)
        results.pop("verify_warmup")
        floor = (results["healthz"]["rps"] + results["healthz_again"]["rps"]) / 2
        ping = (results["ping"]["per_server_cpu_s"] + results["ping_again"]["per_server_cpu_s"]) / 2
        ping_rps = (results["ping"]["rps"] + results["ping_again"]["rps"]) / 2
        ratio_cpu = results["verify"]["per_server_cpu_s"] / ping
        ratio_rps = results["verify"]["rps"] / ping_rps
        for k, v in results.items():
            print(f"{k:>10}: {v['rps']:8,.0f} req/s, {v['per_server_cpu_s']:8,.0f} req per "
                  f"server-CPU-s ({v['server_us_per_request']:.0f} us), p99 {v['p99']}, "
                  f"errors {v['errors']}")
        met = ratio_rps >= 0.6 and results["verify"]["errors"] == 0
        print(f"verify / trivial route (/ping, FastAPI): {ratio_rps:.2f} by requests/s, "
              f"{ratio_cpu:.2f} by server CPU per request "
              f"(target >= 0.60 with zero errors: {'met' if met else 'NOT met'})")
        floor_ratio = results["verify"]["rps"] / floor
        print(f"verify / bare ASGI floor (/healthz, same fast path as verify): "
              f"{floor_ratio:.2f}")
        print("wrote", save("verify", {"results": results, "ratio_rps": ratio_rps,
                                       "ratio_server_cpu": ratio_cpu, "target_met": met,
                                       "ratio_vs_fast_path_floor": floor_ratio,
                                       "generator": f"wrk -t1 -c{CONNECTIONS} -d{DURATION_S}s"}))
    finally:
        stop_server(server)
        shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
