"""Scale-out without shared-state contention (issue 18: two servers' server CPU per scan
within 1.2x of one server's): one store, two ``ehc serve`` processes behind HAProxy
(``deploy/haproxy.cfg``, the file an operator runs), both up for the whole run, and the
two configurations measured in alternate phases on the same processes:

- ``one``: R scans/s offered to the first server directly (the second idles);
- ``two``: 2R scans/s offered to the balancer (R to each server).

Each server takes the same rate in both, so what a scan costs can differ only by what
the two servers share (the store's locks and pages, the audit chains' heads) and by the
host. A scan is a code refresh and the verification of that code, by paced clients
spread over every seeded institution's terminals. A phase's figure is the measured
servers' CPU (``/proc``: the first server in ``one``, both in ``two``) over the scans
answered; the ratio is the median over rounds of ``two / one``, the phases' order swapped
every round (this host's noise comes and goes within seconds, so neither configuration
is always measured first). The periodic pulls and seals are off in both (they would
land in one phase and not the other); the balancer's own CPU is not counted.

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
from loadtests.fleet import Fleet
from loadtests.runner import _free_port as free_port
from services import sdk

from .common import prepared_store, save

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


class Deployment:
    """Two servers on one prepared, seeded store behind HAProxy, and generator processes
    of paced clients: one for the first server alone, two for the balancer."""

    def __init__(self, database_url: str | None, rate: float, residents: int) -> None:
        # no periodic pulls: in neither phase
        env, token = prepared_store(database_url, "scaleout", EHC_SYNC_INTERVAL_S="0")
        ports, bind = [free_port(), free_port()], free_port()
        self.fleet = Fleet(env, ports, bind, ["--log-level", "warning", "--no-access-log",
                                              "--timeout-keep-alive", "30"])
        urls = {"one": f"http://127.0.0.1:{ports[0]}", "two": f"http://127.0.0.1:{bind}"}
        seed = sdk.seed_stack(urls["two"], token, residents)
        cards = [c["card_id"] for c in seed["cards"]]
        # the clients take the terminals in turn: every institution's chain is written
        terminals = [(t, inst["city_code"]) for inst in seed["institutions"]
                     for t in inst["terminals"]]
        clients = math.ceil(rate / SCANS_PER_CLIENT_S)  # each server: one process's worth
        self.per_client = rate / clients
        self.offered = {"one": rate, "two": 2 * rate}
        context = multiprocessing.get_context("spawn")
        self.generators: dict[str, list[tuple[Any, Connection]]] = {}
        for config, n in (("one", 1), ("two", 2)):
            self.generators[config] = []
            for k in range(n):
                mine, theirs = context.Pipe()
                proc = context.Process(target=_clients, daemon=True, args=(
                    theirs, urls[config], seed["channel_apps"][0], terminals, cards,
                    (len(self.generators) * 2 + k) * clients, clients))
                proc.start()
                self.generators[config].append((proc, mine))

    def phase(self, config: str, seconds: float) -> Phase:
        measured = self.fleet.procs[:1] if config == "one" else self.fleet.procs
        phase = Phase(config, seconds, self.offered[config])
        before = sum(sdk.cpu_seconds(p.pid) for p in measured)
        for _, conn in self.generators[config]:
            conn.send((seconds, self.per_client))
        for _, conn in self.generators[config]:
            scans, failures, latencies, cpu = conn.recv()
            phase.scans += scans
            phase.failures += failures
            phase.latencies_ms += latencies
            phase.generator_cpu_s = max(phase.generator_cpu_s, cpu)
        phase.cpu_s = sum(sdk.cpu_seconds(p.pid) for p in measured) - before
        return phase

    def stop(self) -> None:
        for generators in self.generators.values():
            for proc, conn in generators:
                conn.send(None)
                proc.join(10)
        self.fleet.stop()


def measure(database_url: str | None, rate: float, phase_s: float, rounds: int,
            residents: int, label: str) -> dict:
    """The rounds' phases and the median ratio of two servers' CPU per scan to one's."""
    deployment = Deployment(database_url, rate, residents)
    try:
        for config in ("one", "two"):  # warm-up: connections, caches, the day's heads
            deployment.phase(config, min(3.0, phase_s))
        rounds_out: list[dict[str, Any]] = []
        for r in range(rounds):
            order = ("one", "two") if r % 2 == 0 else ("two", "one")
            done: dict[str, Any] = {config: deployment.phase(config, phase_s).summary()
                                    for config in order}
            done["ratio"] = (done["two"]["server_cpu_us_per_scan"]
                             / done["one"]["server_cpu_us_per_scan"])
            rounds_out.append(done)
            print(f"{label} round {r + 1}/{rounds}: " + "; ".join(
                f"{c} server(s) {done[c]['scans_per_s']:.0f} scans/s, "
                f"{done[c]['server_cpu_us_per_scan']:.0f} us a scan, p95 "
                f"{done[c]['p95_ms']:.1f} ms, {done[c]['failures']} failed, generator "
                f"{done[c]['generator_cpu_share']:.0%}"
                + ("" if done[c]["kept_up"] else ", did not keep up")
                for c in ("one", "two")) + f"; two / one {done['ratio']:.2f}", flush=True)
    finally:
        deployment.stop()
    kept = [r for r in rounds_out if r["one"]["kept_up"] and r["two"]["kept_up"]]
    out: dict[str, Any] = {
        "rounds": rounds_out, "rounds_kept_up": len(kept), "ratio": None, "met": None,
        "failures": sum(r[c]["failures"] for r in rounds_out for c in ("one", "two"))}
    if kept:  # only where each server took the same rate
        out |= {"ratio": statistics.median(r["ratio"] for r in kept),
                **{f"{c}_us": statistics.median(r[c]["server_cpu_us_per_scan"] for r in kept)
                   for c in ("one", "two")}}
        out["met"] = out["ratio"] <= SCALE_OUT_CPU
    return out


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
    print(f"saved {save('scaleout', results)}")


if __name__ == "__main__":
    main()
