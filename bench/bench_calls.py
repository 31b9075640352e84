"""Server CPU per call of the scan's two calls, as users meet them: one uvicorn worker, a
sequential keep-alive client (each request waits for the last answer), the server's CPU
read from /proc before and after each route's run, in one run beside ``/healthz`` (the
bare floor of the fast path) on the same server. Routes: the code refresh (dynamic and
fused), the verification of those codes (plain and fused: the fused one also asks the
e-SSC side for the insurance identity). SQLite by default; ``--database-url`` for
PostgreSQL. Goals (issue 18): refresh and verify at most 3x ``/healthz``, a fused
verification at most 2x a plain one, PostgreSQL at most 1.5x SQLite per call.

    python -m bench.bench_calls [--calls 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from services import sdk

from .common import save


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_call_us(pid: int, calls: int, call: Callable[[int], object]) -> float:
    """Server CPU per call (microseconds) over ``calls`` sequential calls."""
    for i in range(min(50, calls)):  # warm-up
        call(i)
    before = cpu_seconds(pid)
    for i in range(calls):
        call(i)
    return (cpu_seconds(pid) - before) / calls * 1e6


def measure(database_url: str | None, calls: int) -> dict[str, float]:
    var = Path(tempfile.mkdtemp(prefix="ehc-calls-"))
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
           "EHC_RATE_LIMIT_TERMINAL_PER_S": "0", "EHC_RATE_LIMIT_APP_PER_S": "0"}
    if database_url:
        env |= {"EHC_DATABASE_URL": database_url,
                "EHC_DB_SCHEMA_PREFIX": f"bc{uuid.uuid4().hex[:8]}_"}
    token = sdk.prepare_store(sdk.Settings(var_dir=var, database_url=database_url,
                                   db_schema_prefix=env.get("EHC_DB_SCHEMA_PREFIX", "")))
    port = 18790
    server = sdk.spawn_server(env, port, "--log-level", "warning", "--no-access-log",
                          stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        seed = sdk.seed_stack(url, token, 60)
        with sdk.AdminClient(url, token, timeout_s=300) as admin:
            sdk.fuse_all(admin, admin)
        app_cred = seed["channel_apps"][0]
        app = sdk.ChannelClient(url, app_cred["app_key"], app_cred["app_secret"])
        inst = seed["institutions"][0]
        t = inst["terminals"][0]
        term = sdk.TerminalClient(url, t["terminal_id"], t["secret"], city_code=inst["city_code"])
        plain = [c["card_id"] for c in seed["cards"] if "ssc_card_no" not in c]
        fused = [c["card_id"] for c in seed["cards"] if "ssc_card_no" in c]
        codes: dict[str, list[str]] = {"dynamic": [], "fused": []}

        def refresh(kind: str, cards: list[str]) -> Callable[[int], object]:
            def one(i: int) -> object:
                text = app.qrcode(cards[i % len(cards)], kind=kind)["qr_text"]
                codes[kind].append(text)
                return text
            return one

        def verify(kind: str) -> Callable[[int], object]:
            return lambda i: term.verify(codes[kind][i], step=sdk.Step.REGISTRATION)

        with httpx.Client(base_url=url) as http:
            def healthz(_: int) -> object:
                return http.get("/healthz")
            out = {"healthz": per_call_us(server.pid, calls, healthz)}
            out["refresh"] = per_call_us(server.pid, calls, refresh("dynamic", plain))
            out["refresh_fused"] = per_call_us(server.pid, calls, refresh("fused", fused))
            out["verify"] = per_call_us(server.pid, calls, verify("dynamic"))
            out["verify_fused"] = per_call_us(server.pid, calls, verify("fused"))
            out["healthz_again"] = per_call_us(server.pid, calls, healthz)
        app.close()
        term.close()
        return out
    finally:
        sdk.stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    out = measure(args.database_url, args.calls)
    floor = (out["healthz"] + out["healthz_again"]) / 2
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{backend}, one worker, sequential client, {args.calls} calls a route:")
    for name in ("refresh", "refresh_fused", "verify", "verify_fused"):
        print(f"  {name:14s} {out[name]:7.0f} us server CPU a call = "
              f"{out[name] / floor:4.1f}x /healthz ({floor:.0f} us)")
    print(f"  fused verify / plain verify: {out['verify_fused'] / out['verify']:.2f}x "
          f"(goal <= 2); refresh and verify goal <= 3x /healthz")
    print("wrote", save(f"calls-{backend.lower()}",
                        {**out, "floor_us": floor, "calls": args.calls,
                         "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
