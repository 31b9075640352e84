"""Settlement throughput: whole outpatient settlements (fee upload, settle with the cash
part paid through the gateway) per second over real HTTP, on SQLite and on PostgreSQL
(when ``EHC_TEST_DATABASE_URL`` names one), with the stack in its own uvicorn process and
``--clients`` hospital terminals settling concurrently. Baseline, same run and same
server: the fused-code verification that hands the voucher token over, timed alone.

    python -m bench.bench_settlement [--n 600] [--clients 8]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich.console import Console

from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.sdk import (
    AdminClient,
    ChannelClient,
    TerminalClient,
    cst_today_text,
    generate_residents,
    insured_record,
    spawn_server,
    stop_server,
)

from .common import save

ITEMS = [{"code": "consultation", "category": "A", "amount_fen": 5_000},
         {"code": "drugs", "category": "A", "amount_fen": 45_000},
         {"code": "CT", "category": "B", "amount_fen": 30_000},
         {"code": "room", "category": "C", "amount_fen": 2_000}]


def run_backend(backend: str, n: int, clients: int, port: int) -> dict:
    var = Path(tempfile.mkdtemp(prefix="ehc-settle-"))
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
           "EHC_RATE_LIMIT_TERMINAL_PER_S": "0", "EHC_SYNC_INTERVAL_S": "0"}
    if backend == "postgres":
        env["EHC_DATABASE_URL"] = os.environ["EHC_TEST_DATABASE_URL"]
        env["EHC_DB_SCHEMA_PREFIX"] = f"b{uuid.uuid4().hex[:8]}_"
    server = spawn_server(env, port, "--no-access-log", "--log-level", "warning")
    url = f"http://127.0.0.1:{port}"
    try:
        admin = AdminClient(url, deployment_secret(Settings(var_dir=var), "admin_token"))
        people = list(generate_residents(clients, seed=31))
        admin.add_residents([{"id_type": "01", "id_number": p.id_number, "name": p.name}
                             for p in people])
        admin.add_insured([insured_record(p, 700 + i) for i, p in enumerate(people)])
        inst = "330100000099"
        admin.add_hospital(inst, "Bench hospital", "330100")
        app_cred = admin.add_shared_app("bench")
        app = ChannelClient(url, app_cred["app_key"], app_cred["app_secret"])
        lanes = []
        for i, p in enumerate(people):
            cred = admin.add_shared_terminal(inst, f"{i + 1:04d}", 1)
            card = app.apply("01", p.id_number, p.name)
            essc = app.claim_essc("01", p.id_number, p.name)
            app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
            lanes.append((card["card_id"], TerminalClient(url, cred["terminal_id"],
                                                          cred["secret"], city_code="330100")))

        def token(lane) -> str:
            code = app.qrcode(lane[0], kind="fused")["qr_text"]
            return lane[1].verify(code, step=10105)["essc"]["ec_token"]

        def verify_only(i: int) -> float:
            t0 = time.perf_counter()
            token(lanes[i % clients])
            return time.perf_counter() - t0

        def settle(i: int) -> float:
            lane = lanes[i % clients]
            tok = token(lane)
            t0 = time.perf_counter()
            sid = lane[1].upload_fees(tok, ITEMS)["settlement_id"]
            state = lane[1].settle(sid)["state"]
            assert state == "settled", state
            return time.perf_counter() - t0

        results = {}
        for name, fn in (("verify", verify_only), ("settle", settle)):
            with ThreadPoolExecutor(clients) as pool:
                t0 = time.perf_counter()
                lat = list(pool.map(fn, range(n)))
                wall = time.perf_counter() - t0
            results[name] = {"n": n, "per_s": round(n / wall, 1),
                             "p50_ms": round(statistics.median(lat) * 1000, 1)}
        report = admin.reconcile_settlements(cst_today_text())
        results["reconcile_clean"] = report["clean"]
        results["settled"] = report["by_state"].get("settled", 0)
        return results
    finally:
        stop_server(server)
        shutil.rmtree(var, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--port", type=int, default=8751)
    args = ap.parse_args()
    console = Console()
    backends = ["sqlite"] + (["postgres"] if os.environ.get("EHC_TEST_DATABASE_URL") else [])
    out = {}
    for backend in backends:
        r = run_backend(backend, args.n, args.clients, args.port)
        # settle wall time includes the fused verify that fetched the token: subtract it
        verify_s, total_s = 1 / r["verify"]["per_s"], 1 / r["settle"]["per_s"]
        r["settlements_per_s"] = round(1 / max(total_s - verify_s, 1e-9), 1)
        r["settle_cost_vs_verify"] = round((total_s - verify_s) / verify_s, 2)
        out[backend] = r
        console.print(f"{backend}: {r['settlements_per_s']} settlements/s (upload + settle + "
                      f"payment), {r['verify']['per_s']} fused verifications/s; a settlement "
                      f"costs {r['settle_cost_vs_verify']}x a verification; reconcile clean: "
                      f"{r['reconcile_clean']}")
    path = save("settlement", {"clients": args.clients, **out})
    console.print(f"-> {path}")


if __name__ == "__main__":
    main()
