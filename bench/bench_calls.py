"""Server CPU per call of the scan's two calls, as users meet them: one uvicorn worker, a
sequential keep-alive client (each request waits for the last answer), the server's CPU
read from /proc around each route's calls, beside ``/healthz`` (the bare floor of the fast
path) on the same server, the routes taking turns a few hundred calls at a time. Routes:
the code refresh (dynamic and fused), the verification of those codes (plain and fused:
the fused one also asks the e-SSC side for the insurance identity).

The terminal's rate limit is lifted (a sequential client scans faster than a reader's
50 a second); the channel app's is the default (5,000 a second), so each refresh pays
for its rate check as it does in service.

SQLite always; PostgreSQL too when ``--database-url`` (or ``EHC_TEST_DATABASE_URL``) names
one: a server on each, measured in alternate rounds, so both meet the same machine and
the PostgreSQL / SQLite ratios are of one run. Each ratio is the median over the rounds.
Goals (issue 18): refresh and verify at most 3x ``/healthz``, a fused verification at
most 2x a plain one, PostgreSQL at most 1.5x SQLite per call.

    python -m bench.bench_calls [--calls 2000] [--rounds 3] [--database-url URL]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import time
from collections import deque
from collections.abc import Callable
from functools import partial

import httpx

from services import sdk

from .common import app_limit_as_in_service, prepared_store, save

ROUTES = ("refresh", "refresh_fused", "verify", "verify_fused")


Prepare = Callable[[int], list[Callable[[], object]]]  # n -> n calls, signed, to make


def per_call_us(pid: int, calls: int, routes: dict[str, Prepare], chunk: int = 200
                ) -> dict[str, float]:
    """Server CPU per call (microseconds) of each route over ``calls`` sequential calls,
    the routes taking turns ``chunk`` calls at a time: every route, the floor included,
    is measured across the same stretch of time (the host's noise comes and goes within
    seconds). Each chunk's requests are signed before its clock starts, so the client
    does the same little between two calls of any route: the server waits as long for
    each, and a route's CPU is not raised by a client that takes longer to sign (a
    server idle longer between calls finds its caches colder). Beside the CPU, each
    route's write system calls a call (``NAME_writes``): a count the host's noise does
    not move."""
    for prepare in routes.values():  # warm-up
        for call in prepare(min(50, calls)):
            call()
    spent = dict.fromkeys(routes, 0.0)
    writes = dict.fromkeys(routes, 0)
    for start in range(0, calls, chunk):
        for name, prepare in routes.items():
            batch = prepare(min(chunk, calls - start))
            before, wrote = sdk.cpu_seconds(pid), write_calls(pid)
            for call in batch:
                call()
            spent[name] += sdk.cpu_seconds(pid) - before
            writes[name] += write_calls(pid) - wrote
    return {name: seconds / calls * 1e6 for name, seconds in spent.items()} | {
        f"{name}_writes": count / calls for name, count in writes.items()}


def write_calls(pid: int) -> int:
    """Write system calls a process has made (``syscw`` of ``/proc/PID/io``): an answer on
    the socket is one; on SQLite each page a commit changes is two, the WAL frame's header
    and the page (so it counts the pages a call's transaction writes)."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("syscw:"):
                return int(line.split()[1])
    return 0


class Server:
    """One uvicorn worker on a seeded, fused store, and the clients of the scan."""

    def __init__(self, database_url: str | None, port: int) -> None:
        env, token = prepared_store(database_url, "calls", **app_limit_as_in_service())
        self.proc = sdk.spawn_server(env, port, "--log-level", "warning", "--no-access-log",
                                     stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        seed = sdk.seed_stack(url, token, 60)
        with sdk.AdminClient(url, token, timeout_s=300) as admin:
            sdk.fuse_all(admin, admin)
        app_cred = seed["channel_apps"][0]
        self.app = sdk.ChannelClient(url, app_cred["app_key"], app_cred["app_secret"])
        inst = seed["institutions"][0]
        t = inst["terminals"][0]
        self.term = sdk.TerminalClient(url, t["terminal_id"], t["secret"],
                                       city_code=inst["city_code"])
        self.http = httpx.Client(base_url=url)
        self.cards = {"dynamic": [c["card_id"] for c in seed["cards"] if "ssc_card_no" not in c],
                      "fused": [c["card_id"] for c in seed["cards"] if "ssc_card_no" in c]}

    def round(self, calls: int) -> dict[str, float]:
        """Each route's server CPU per call, in turns with ``/healthz``."""
        codes: dict[str, deque[str]] = {"dynamic": deque(), "fused": deque()}

        def floor(request: httpx.Request) -> None:
            self.http.send(request).raise_for_status()

        def healthz(n: int) -> list[Callable[[], object]]:
            return [partial(floor, self.http.build_request("GET", "/healthz"))
                    for _ in range(n)]

        def refresh(kind: str) -> Prepare:
            cards, made = self.cards[kind], itertools.count()

            def made_code(request: httpx.Request) -> None:
                codes[kind].append(self.app.send(request)["qr_text"])

            return lambda n: [partial(made_code, self.app.prepare(
                "GET", f"/ehc/v1/cards/{cards[next(made) % len(cards)]}/qrcode",
                params={"kind": kind})) for _ in range(n)]

        def verify(kind: str) -> Prepare:  # each code made, verified once
            return lambda n: [partial(self.term.send, self.term.prepare(
                "POST", "/ehc/v1/qrcodes/verify", self.term.verify_body(
                    codes[kind].popleft(), step=sdk.Step.REGISTRATION))) for _ in range(n)]

        return per_call_us(self.proc.pid, calls, {
            "healthz": healthz, "refresh": refresh("dynamic"),
            "refresh_fused": refresh("fused"), "verify": verify("dynamic"),
            "verify_fused": verify("fused")})

    def stop(self) -> None:
        for client in (self.app, self.term, self.http):
            client.close()
        sdk.stop_server(self.proc)


def summary(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Median per route over the rounds, and the median of each route / ``/healthz``."""
    out = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    for name in ROUTES:
        out[f"{name}_x_healthz"] = statistics.median(r[name] / r["healthz"] for r in rounds)
    out["fused_x_plain"] = statistics.median(r["verify_fused"] / r["verify"] for r in rounds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000, help="calls a route a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("EHC_TEST_DATABASE_URL"),
                        help="a PostgreSQL server to measure beside SQLite")
    args = parser.parse_args()
    started = time.perf_counter()
    backends = {"sqlite": None} | ({"postgres": args.database_url} if args.database_url
                                   else {})
    servers: dict[str, Server] = {}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in backends}
    try:
        for i, (name, url) in enumerate(backends.items()):
            servers[name] = Server(url, 18790 + i)
        for r in range(args.rounds):
            for name in backends:  # alternately: both backends meet the same machine
                rounds[name].append(servers[name].round(args.calls))
                print(f"round {r + 1}/{args.rounds} {name}: " + ", ".join(
                    f"{k} {v:.0f}" for k, v in rounds[name][-1].items()
                    if not k.endswith("_writes")) + " us", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    results: dict[str, object] = {"calls": args.calls, "rounds": args.rounds}
    for name in backends:
        s = results[name] = summary(rounds[name]) | {"rounds_us": rounds[name]}
        print(f"{name}, one worker, sequential client, {args.calls} calls a route, median of "
              f"{args.rounds} rounds (/healthz {s['healthz']:.0f} us):")
        for route in ROUTES:
            goal = "" if route == "verify_fused" else " (goal <= 3)"
            print(f"  {route:14s} {s[route]:6.0f} us server CPU a call = "
                  f"{s[route + '_x_healthz']:4.1f}x /healthz{goal}, "
                  f"{s[route + '_writes']:4.1f} write calls (/healthz "
                  f"{s['healthz_writes']:.1f})")
        print(f"  fused verify / plain verify: {s['fused_x_plain']:.2f}x (goal <= 2)")
    if "postgres" in backends:
        ratios = {route: statistics.median(p[route] / q[route] for p, q in zip(
            rounds["postgres"], rounds["sqlite"], strict=True)) for route in ROUTES}
        results["postgres_x_sqlite"] = ratios
        print("PostgreSQL / SQLite per call (goal <= 1.5): " + ", ".join(
            f"{route} {x:.2f}x" for route, x in ratios.items()))
    results["seconds"] = time.perf_counter() - started
    print("wrote", save("calls", results))


if __name__ == "__main__":
    main()
