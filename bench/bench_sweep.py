"""The sweep of expired nonces at a held peak (issue 18): how long it holds up the hot
path's writes, on stores filled alike in the same run.

A nonce is kept about six minutes (``signing.nonce_expiry``); at the scan's knee of one
worker (1,600 scans/s, two signed requests a scan) that is over a million rows, a twelfth
of them expired at each half-minute sweep. The nonces' table has no index on its expiry
(a claim writes one page, not two), so the sweep reads it.

SQLite (one writer: while a sweep runs no write of the hot path commits, and an inline
write holds the event loop itself): the one ``DELETE``'s time, the way before, against a
sliced pass's slices (each its own transaction, as each rides one write transaction of
the hot path): the longest, the median, their number and sum; both leave the same rows.
The WAL's checkpoint is left out of both (it runs after a commit, with the write lock
free, and writes back the same pages either way). PostgreSQL (the sweep whole, on a
connection of its own beside the batches): the one ``DELETE``'s time, and nonces claimed
on another connection while it runs against the same claims alone.

SQLite always; PostgreSQL too when ``--database-url`` (or ``EHC_TEST_DATABASE_URL``)
names one.

    python -m bench.bench_sweep [--rows 1150000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import Engine, event, text

from services.common.db import make_engine
from services.common.settings import Settings
from services.common.shared_store import (
    NONCES,
    SlicedSweep,
    Swept,
    run_on,
    sweep_statements,
)
from services.healthcard.tables import metadata

from .common import save

WINDOW_S = 360.0  # a nonce's life: the signature's age limit (300 s) and the slack (60 s)


def store(database_url: str | None) -> Engine:
    """A fresh card-management store (its real schema) on SQLite or PostgreSQL."""
    var = Path(tempfile.mkdtemp(prefix="ehc-sweep-"))
    settings = Settings(var_dir=var, database_url=database_url,
                        db_schema_prefix=f"sw{uuid.uuid4().hex[:8]}_" if database_url else "")
    engine = make_engine(settings, "healthcard", metadata, {"chain_key": bytes(32)})
    if not database_url:  # the checkpoint runs after a commit, the write lock free: out
        event.listen(engine, "connect", lambda dbapi, _: dbapi.execute(
            "PRAGMA wal_autocheckpoint=0"))
        engine.dispose()  # connections from here on carry it
    return engine


def fill(engine: Engine, rows: int, now: float, seed: int) -> int:
    """``rows`` nonces of 200 terminals, their expiries spread over a nonce's life so
    that the sweep period's share has passed (as at a steady peak); the expired count."""
    rng = random.Random(seed)
    terminals = [str(rng.randrange(10**15, 10**16)) for _ in range(200)]
    expired = 0
    batch: list[tuple[str, float]] = []
    with engine.begin() as conn:
        for _ in range(rows):
            expires = now - 30 + rng.random() * WINDOW_S
            expired += expires < now
            batch.append((f"nonce:{rng.choice(terminals)}:{rng.randbytes(18).hex()}",
                          expires))
            if len(batch) == 20_000:
                _insert(conn, engine, batch)
        _insert(conn, engine, batch)
    return expired


def _insert(conn, engine: Engine, batch: list[tuple[str, float]]) -> None:
    if not batch:
        return
    mark = "%s" if engine.dialect.name == "postgresql" else "?"
    conn.exec_driver_sql(f"INSERT INTO {NONCES} (token, expires_at) VALUES ({mark}, {mark})",
                         batch)
    batch.clear()


def whole(engine: Engine, now: float) -> float:
    """The one ``DELETE``, in its own transaction: milliseconds."""
    (sql,) = sweep_statements(Swept(NONCES), engine.dialect.name == "postgresql")
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(sql, (now,))
    return (time.perf_counter() - started) * 1000


def sliced(engine: Engine, now: float) -> list[float]:
    """A pass of ``SlicedSweep``, a slice a transaction: each one's milliseconds."""
    sweep = SlicedSweep([Swept(NONCES, "token")], postgres=engine.dialect.name ==
                        "postgresql")
    took = []
    while sweep.due(now):
        started = time.perf_counter()
        with engine.begin() as conn:
            run_on(conn, sweep.steps(now, {NONCES: now}))
        took.append((time.perf_counter() - started) * 1000)
    return took


def settle(engine: Engine) -> None:
    """The filled store as a live one is: its log written back (SQLite's WAL
    checkpointed, PostgreSQL's checkpoint), PostgreSQL's table vacuumed and analysed as
    its autovacuum would have, the table read once (a warm cache)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"VACUUM ANALYZE {NONCES}")
            conn.exec_driver_sql("CHECKPOINT")
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    left(engine)


def left(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {NONCES}")).scalar_one()


def claim_ms(engine: Engine) -> float:
    """A new nonce claimed in its own transaction: milliseconds."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {NONCES} (token, expires_at) VALUES (%s, %s)",
                             (f"nonce:claim:{uuid.uuid4().hex}", time.time() + 60))
    return (time.perf_counter() - started) * 1000


def beside(database_url: str, rows: int) -> dict[str, float]:
    """PostgreSQL: the one ``DELETE`` on a connection of its own, and claims made beside
    it (each after the last) against claims made alone."""
    now = time.time()
    engine = store(database_url)
    took: list[float] = []
    try:
        expired = fill(engine, rows, now, seed=7)
        settle(engine)
        alone = [claim_ms(engine) for _ in range(20)]
        sweep = threading.Thread(target=lambda: took.append(whole(engine, now)))
        sweep.start()
        time.sleep(0.005)
        during = []
        while sweep.is_alive():
            during.append(claim_ms(engine))
        sweep.join()
        assert left(engine) == rows - expired + len(alone) + len(during)
    finally:
        engine.dispose()
    return {"rows": rows, "expired": expired, "whole_ms": took[0],
            "claims_beside": len(during), "claim_beside_longest_ms": max(during),
            "claim_alone_longest_ms": max(alone),
            "claim_beside_median_ms": statistics.median(during),
            "claim_alone_median_ms": statistics.median(alone)}


def measure(database_url: str | None, rows: int) -> dict[str, float]:
    """Both ways on two stores filled alike (SQLite)."""
    now = time.time()
    one, two = store(database_url), store(database_url)
    try:
        expired = fill(one, rows, now, seed=7)
        assert fill(two, rows, now, seed=7) == expired
        for engine in (one, two):
            settle(engine)
        whole_ms = whole(one, now)
        slices = sliced(two, now)
        kept = left(one)
        assert kept == left(two) == rows - expired, "the two sweeps left different rows"
    finally:
        for engine in (one, two):
            engine.dispose()
    return {"rows": rows, "expired": expired, "whole_ms": whole_ms,
            "slices": len(slices), "slice_longest_ms": max(slices),
            "slice_median_ms": statistics.median(slices),
            "slice_p99_ms": statistics.quantiles(slices, n=100)[98],
            "slices_total_ms": sum(slices),
            "longest_over_whole": max(slices) / whole_ms}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_150_000,
                        help="nonces held (default: six minutes at 3,200 claims/s)")
    parser.add_argument("--database-url", default=os.environ.get("EHC_TEST_DATABASE_URL"),
                        help="a PostgreSQL server to measure beside SQLite")
    args = parser.parse_args()
    results: dict[str, object] = {}
    r = results["sqlite"] = measure(None, args.rows)
    print(f"sqlite: {r['rows']:,} nonces, {r['expired']:,} expired. One DELETE held "
          f"the write lock {r['whole_ms']:.0f} ms; sliced: {r['slices']} transactions, "
          f"the longest {r['slice_longest_ms']:.1f} ms (median "
          f"{r['slice_median_ms']:.1f}, 99th percentile {r['slice_p99_ms']:.1f}, sum "
          f"{r['slices_total_ms']:.0f}): the longest "
          f"hold {r['longest_over_whole']:.3f}x the one DELETE's", flush=True)
    if args.database_url:
        p = results["postgres"] = beside(args.database_url, args.rows)
        print(f"postgres: {p['rows']:,} nonces, {p['expired']:,} expired. One DELETE "
              f"{p['whole_ms']:.0f} ms on its own connection; {p['claims_beside']} claims "
              f"beside it, the longest {p['claim_beside_longest_ms']:.1f} ms (median "
              f"{p['claim_beside_median_ms']:.1f}) against "
              f"{p['claim_alone_longest_ms']:.1f} ms alone (median "
              f"{p['claim_alone_median_ms']:.1f})", flush=True)
    print("wrote", save("sweep", results))


if __name__ == "__main__":
    main()
