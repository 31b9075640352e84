"""Scale-out without shared-state contention (issue 18: two servers' server CPU per scan
within 1.2x of one server's): one store, two ``ehc serve`` processes behind HAProxy
(``deploy/haproxy.cfg``, the file an operator runs), both up for the whole run, and the
two configurations measured in alternate phases on the same processes:

- ``one``: R scans/s offered to the first server directly (the second idles);
- ``two``: 2R scans/s offered to the balancer, R to each server: the balancer sends an
  institution's terminals to one server, and each of the two generators scans with the
  terminals of one server's institutions (read from the server the balancer names).

Each server takes the same rate in both, so what a scan costs can differ only by what
the two servers share (the store's locks and pages, the audit chains' heads) and by the
host. Two more phases tell those apart, each R to each of two servers directly:

- ``pair``: the same two servers, on the one store, each its institutions, directly;
- ``apart``: the first server and a third on a store of its own (nothing shared but
  the machine, and on PostgreSQL the database server: a schema of its own).

So ``two / one`` (the goal) is ``apart / one`` (the host: two busy servers on these
cores), times ``pair / apart`` (what the shared store adds), times ``two / pair`` (the
balancer beside them on the same cores), each printed with its median.

A scan is a code refresh and the verification of that code, by paced clients
spread over every seeded institution's terminals. A phase's figure is the measured
servers' CPU (``/proc``: the servers that phase drives) over the scans answered; each
ratio is the median over the rounds where both its phases kept up with their offer,
the phases' order rotated every round (this host's noise comes and goes within seconds,
so no configuration is always measured first). The periodic pulls and seals are off
(they would land in one phase and not another); the balancer's own CPU is not counted.
The channel app's rate limit is at its default, as in service: every refresh moves its
app's paced bucket, a row both servers write (the terminals' limits are lifted).

SQLite always; PostgreSQL too when ``--database-url`` (or ``EHC_TEST_DATABASE_URL``)
names one.

    python -m bench.bench_scaleout [--rate 150] [--phase-s 10] [--rounds 5]
                                   [--database-url URL]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from loadtests.capacity import SCALE_OUT_CPU
from loadtests.fleet import Fleet, servers_of
from loadtests.runner import _free_port as free_port
from services import sdk

from .common import app_limit_as_in_service, prepared_store, save

SCANS_PER_CLIENT_S = 25.0  # a paced client's rate: 40 ms a scan before it falls behind
KEPT_UP = 0.9  # a phase that answered less than this share of its offer did not keep up


@dataclass
class Phase:
    """What one phase measured."""

    config: str
    seconds: float
    offered_per_s: float
    scans: int = 0
    failures: int = 0
    cpu_s: float = 0.0
    generator_cpu_s: float = 0.0  # the busiest generator process's
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms) or [float("nan")]
        return {"config": self.config, "scans": self.scans, "failures": self.failures,
                "scans_per_s": self.scans / self.seconds,
                "server_cpu_us_per_scan": 1e6 * self.cpu_s / self.scans
                if self.scans else float("nan"),
                "p50_ms": lat[len(lat) // 2], "p95_ms": lat[int(len(lat) * 0.95)],
                "generator_cpu_share": self.generator_cpu_s / self.seconds,
                "kept_up": self.scans >= KEPT_UP * self.offered_per_s * self.seconds}


class Scanner:
    """One paced client: a channel app that refreshes a card's code and a terminal that
    verifies it, at one base URL."""

    def __init__(self, url: str, app: dict, terminal: dict, city_code: str,
                 cards: list[str], offset: int) -> None:
        self.app = sdk.ChannelClient(url, app["app_key"], app["app_secret"])
        self.term = sdk.TerminalClient(url, terminal["terminal_id"], terminal["secret"],
                                       city_code=city_code,
                                       terminal_type=terminal["terminal_type"])
        self.cards, self.next_card = cards, offset

    def scan(self) -> None:
        card = self.cards[self.next_card % len(self.cards)]
        self.next_card += 1
        self.term.verify(self.app.qrcode(card)["qr_text"])

    def run(self, phase: Phase, rate: float, until: float, lock: threading.Lock) -> None:
        """Scans at ``rate`` per second until ``until`` (monotonic), each started on its
        slot (a late client does not burst to catch up)."""
        slot = time.monotonic()
        while (now := time.monotonic()) < until:
            if now < slot:
                time.sleep(slot - now)
            slot = max(slot + 1 / rate, time.monotonic() - 1 / rate)
            started = time.perf_counter()
            try:
                self.scan()
                ok = True
            except (sdk.SdkError, OSError) as exc:
                ok = False
                print(f"  scan failed: {exc}", flush=True)
            with lock:
                phase.scans += ok
                phase.failures += not ok
                phase.latencies_ms.append(1e3 * (time.perf_counter() - started))

    def close(self) -> None:
        self.app.close()
        self.term.close()


def _clients(conn: Connection, url: str, app: dict, terminals: list[tuple[dict, str]],
             cards: list[str], first: int, count: int) -> None:
    """A generator process: ``count`` paced scanners at ``url``, one phase per command
    (seconds, scans/s per scanner) until None; each phase's counts back on ``conn``."""
    scanners = [Scanner(url, app, *terminals[((first + k) * 7) % len(terminals)], cards,
                        (first + k) * 101) for k in range(count)]
    while (command := conn.recv()) is not None:
        seconds, rate = command
        phase, lock = Phase("", seconds, 0.0), threading.Lock()
        cpu, until = time.process_time(), time.monotonic() + seconds
        threads = [threading.Thread(target=s.run, args=(phase, rate, until, lock))
                   for s in scanners]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conn.send((phase.scans, phase.failures, phase.latencies_ms,
                   time.process_time() - cpu))
    for s in scanners:
        s.close()


PHASES = ("one", "two", "pair", "apart")
# each ratio: (name, numerator phase, denominator phase, what it measures)
RATIOS = (("ratio", "two", "one", "two servers behind the balancer over one (the goal)"),
          ("host", "apart", "one", "two servers on stores of their own over one"),
          ("store", "pair", "apart", "one shared store over stores of their own"),
          ("balancer", "two", "pair", "through the balancer over direct"))


class Deployment:
    """Two servers on one prepared, seeded store behind HAProxy, a third on a store of its
    own, and generator processes of paced clients, each at one server's rate: for the
    first server (every institution, and its own), the second, the third, and two for the
    balancer (each one server's institutions)."""

    def __init__(self, database_url: str | None, rate: float, residents: int) -> None:
        # no periodic pulls: in no phase; the apps' rate limit on, as in service (their
        # paced buckets are rows the two servers share)
        env, token = prepared_store(database_url, "scaleout", EHC_SYNC_INTERVAL_S="0",
                                    **app_limit_as_in_service())
        own_env, own_token = prepared_store(database_url, "scaleapart",
                                            EHC_SYNC_INTERVAL_S="0",
                                            **app_limit_as_in_service())
        ports, bind, own_port = [free_port(), free_port()], free_port(), free_port()
        self.fleet = Fleet(env, ports, bind, UVICORN_ARGS)
        self.own = sdk.spawn_server(own_env, own_port, *UVICORN_ARGS)
        first, second, own = self.fleet.procs[0], self.fleet.procs[1], self.own
        balancer = f"http://127.0.0.1:{bind}"
        shared = _Seeded(sdk.seed_stack(balancer, token, residents))
        apart_url = f"http://127.0.0.1:{own_port}"
        apart = _Seeded(sdk.seed_stack(apart_url, own_token, residents))
        clients = math.ceil(rate / SCANS_PER_CLIENT_S)  # each server: one process's worth
        self.rate, self.per_client = rate, rate / clients
        context = multiprocessing.get_context("spawn")
        made: list[tuple[Any, Connection]] = []

        def generator(url: str, seeded: _Seeded, institutions: list[int] | None = None
                      ) -> tuple[Any, Connection]:
            mine, theirs = context.Pipe()
            proc = context.Process(target=_clients, daemon=True, args=(
                theirs, url, seeded.app, seeded.terminals(institutions), seeded.cards,
                len(made) * clients, clients))
            proc.start()
            made.append((proc, mine))
            return made[-1]

        first_url, second_url = (f"http://127.0.0.1:{port}" for port in ports)
        at_first = generator(first_url, shared)
        # each server's institutions as the balancer sends them (``deploy/haproxy.cfg``:
        # an institution's terminals to one server), so that in every phase of two each
        # server takes R: its own institutions' scans
        split = _split_by(balancer, shared)
        mine_at_first = generator(first_url, shared, split["s1"])
        # (generators, the servers measured) of each phase
        self.phases = {
            "one": ([at_first], [first]),
            "two": ([generator(balancer, shared, split["s1"]),
                     generator(balancer, shared, split["s2"])], [first, second]),
            "pair": ([mine_at_first, generator(second_url, shared, split["s2"])],
                     [first, second]),
            "apart": ([mine_at_first, generator(apart_url, apart, split["s2"])],
                      [first, own])}
        self.generators = made

    def phase(self, config: str, seconds: float) -> Phase:
        generators, measured = self.phases[config]
        phase = Phase(config, seconds, self.rate * len(generators))  # R a generator
        before = sum(sdk.cpu_seconds(p.pid) for p in measured)
        for _, conn in generators:
            conn.send((seconds, self.per_client))
        for _, conn in generators:
            scans, failures, latencies, cpu = conn.recv()
            phase.scans += scans
            phase.failures += failures
            phase.latencies_ms += latencies
            phase.generator_cpu_s = max(phase.generator_cpu_s, cpu)
        phase.cpu_s = sum(sdk.cpu_seconds(p.pid) for p in measured) - before
        return phase

    def stop(self) -> None:
        for proc, conn in self.generators:
            conn.send(None)
            proc.join(10)
        self.fleet.stop()
        sdk.stop_server(self.own)


UVICORN_ARGS = ["--log-level", "warning", "--no-access-log", "--timeout-keep-alive", "30"]


@dataclass
class _Seeded:
    """What a generator needs of a seeded store: the app, every institution's terminals
    (the clients take them in turn: every institution's chain is written), the cards."""

    seed: dict[str, Any]

    @property
    def app(self) -> dict:
        return self.seed["channel_apps"][0]

    def terminals(self, institutions: list[int] | None = None) -> list[tuple[dict, str]]:
        """Its terminals, of every institution or of those (their places in the seed)."""
        chosen = self.seed["institutions"]
        if institutions is not None:
            chosen = [chosen[i] for i in institutions]
        return [(t, inst["city_code"]) for inst in chosen for t in inst["terminals"]]

    @property
    def cards(self) -> list[str]:
        return [c["card_id"] for c in self.seed["cards"]]


def _split_by(balancer: str, seeded: _Seeded) -> dict[str, list[int]]:
    """The institutions (their places in the seed) the balancer sends to each server."""
    institutions = seeded.seed["institutions"]
    named = servers_of(balancer, institutions) or {}
    split = {server: [i for i, inst in enumerate(institutions)
                      if named.get(inst["code"]) == server] for server in ("s1", "s2")}
    if not all(split.values()):
        raise RuntimeError(f"the balancer sends every seeded institution to one server "
                           f"({split}): no phase of two could give each server R")
    return split


def measure(database_url: str | None, rate: float, phase_s: float, rounds: int,
            residents: int, label: str) -> dict:
    """The rounds' phases and the median of each ratio (``RATIOS``)."""
    deployment = Deployment(database_url, rate, residents)
    try:
        for config in PHASES:  # warm-up: connections, caches, the day's heads
            deployment.phase(config, min(3.0, phase_s))
        rounds_out: list[dict[str, Any]] = []
        for r in range(rounds):
            order = PHASES[r % len(PHASES):] + PHASES[:r % len(PHASES)]
            done: dict[str, Any] = {config: deployment.phase(config, phase_s).summary()
                                    for config in order}
            for name, top, bottom, _ in RATIOS:
                done[name] = (done[top]["server_cpu_us_per_scan"]
                              / done[bottom]["server_cpu_us_per_scan"])
            rounds_out.append(done)
            print(f"{label} round {r + 1}/{rounds}: " + "; ".join(
                f"{c} {done[c]['scans_per_s']:.0f} scans/s, "
                f"{done[c]['server_cpu_us_per_scan']:.0f} us a scan, p95 "
                f"{done[c]['p95_ms']:.1f} ms, {done[c]['failures']} failed, generator "
                f"{done[c]['generator_cpu_share']:.0%}"
                + ("" if done[c]["kept_up"] else ", did not keep up")
                for c in PHASES) + "; " + ", ".join(
                f"{name} {done[name]:.2f}" for name, *_ in RATIOS), flush=True)
    finally:
        deployment.stop()
    out: dict[str, Any] = {
        "rounds": rounds_out, "met": None,
        "failures": sum(r[c]["failures"] for r in rounds_out for c in PHASES)}
    for name, top, bottom, _ in RATIOS:  # each only where its phases both kept up
        kept = [r for r in rounds_out if r[top]["kept_up"] and r[bottom]["kept_up"]]
        out[name] = statistics.median(r[name] for r in kept) if kept else None
        out[f"{name}_rounds"] = len(kept)
        if name == "ratio" and kept:
            out |= {f"{c}_us": statistics.median(r[c]["server_cpu_us_per_scan"]
                                                 for r in kept) for c in (top, bottom)}
            out["met"] = out["ratio"] <= SCALE_OUT_CPU
    out["rounds_kept_up"] = out["ratio_rounds"]
    return out


def parts_line(r: dict[str, Any]) -> str:
    """What two / one is made of (``RATIOS`` after the first), each as measured."""
    return "  of which: " + "; ".join(
        f"{meaning} ({top} / {bottom}) "
        + (f"{r[name]:.2f}x over {r[name + '_rounds']} round(s)" if r[name] is not None
           else "not measured")
        for name, top, bottom, meaning in RATIOS[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=150.0,
                        help="scans/s offered to each server (default 150)")
    parser.add_argument("--phase-s", type=float, default=10.0, help="seconds a phase")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--residents", type=int, default=200)
    parser.add_argument("--database-url", default=os.environ.get("EHC_TEST_DATABASE_URL"),
                        help="a PostgreSQL server to measure beside SQLite")
    args = parser.parse_args()
    if args.rate <= 0 or args.phase_s <= 0 or args.rounds < 1:
        parser.error("--rate and --phase-s must be positive, --rounds at least 1")
    backends = {"sqlite": None} | ({"postgres": args.database_url} if args.database_url
                                   else {})
    results: dict[str, object] = {"rate_per_server": args.rate, "phase_s": args.phase_s,
                                  "rounds": args.rounds, "limit": SCALE_OUT_CPU}
    for name, url in backends.items():
        results[name] = r = measure(url, args.rate, args.phase_s, args.rounds,
                                    args.residents, name)
        head = (f"{name}: server CPU per scan, two servers behind HAProxy at "
                f"{2 * args.rate:g} scans/s over one at {args.rate:g}/s")
        if r["ratio"] is None:
            print(f"{head}: not measured: no round where both kept up with their offer "
                  "(lower --rate)", flush=True)
            continue
        print(f"{head}: median {r['ratio']:.2f}x over {r['rounds_kept_up']} round(s) "
              f"where both kept up ({r['two_us']:.0f} / {r['one_us']:.0f} us; limit "
              f"{SCALE_OUT_CPU}): {'met' if r['met'] else 'NOT met'}; "
              f"{r['failures']} scans failed", flush=True)
        print(parts_line(r), flush=True)
    print(f"saved {save('scaleout', results)}")


if __name__ == "__main__":
    main()
