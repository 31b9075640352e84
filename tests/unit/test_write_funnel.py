"""The hot path's write funnel: concurrent writes share one transaction on the writer
thread; a lone write goes on the loop when the store's lock is free, through the thread
when it is not, and never past a write in flight (order and group commit kept). The raw
connections they write on: pinned to a thread, or taken from the pool and given back.
An async store (PostgreSQL's driver) writes one batch at a time, what waits behind it
together; its batches run their statements in lockstep."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence

import pytest

from services.common.fastpath import INLINE_RUN, InlineFirst, StoreBusy, WriteFunnel


class Store:
    """Records which thread wrote each batch; ``busy`` refuses the inline attempts."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.busy = False
        self.gate = threading.Event()
        self.gate.set()

    def thread(self, items: Sequence[int]) -> list[int | Exception]:
        self.gate.wait(5)
        self.batches.append(("thread", list(items)))
        return [ValueError(i) if i < 0 else i * 10 for i in items]

    def inline(self, items: Sequence[int]) -> list[int | Exception]:
        assert threading.current_thread() is threading.main_thread()
        if self.busy:
            raise StoreBusy()
        self.batches.append(("inline", list(items)))
        return [ValueError(i) if i < 0 else i * 10 for i in items]


def test_a_lone_write_goes_inline_and_a_busy_store_through_the_thread() -> None:
    store = Store()
    funnel = WriteFunnel(store.thread, inline=store.inline)

    async def main() -> None:
        assert await funnel.submit(1) == 10
        store.busy = True
        assert await funnel.submit(2) == 20
        store.busy = False
        try:
            await funnel.submit(-3)
        except ValueError as exc:  # a refused item's own error, inline too
            assert exc.args == (-3,)
        else:
            raise AssertionError("a refused item succeeded")

    asyncio.run(main())
    funnel.close()
    assert store.batches == [("inline", [1]), ("thread", [2]), ("inline", [-3])]
    assert (funnel.batches, funnel.items) == (3, 3)


def test_writes_in_flight_keep_later_ones_off_the_loop_and_batched() -> None:
    store = Store()
    funnel = WriteFunnel(store.thread, inline=store.inline)

    async def main() -> None:
        store.busy = True  # the first goes to the thread, which is held there
        store.gate.clear()
        first = asyncio.ensure_future(funnel.submit(1))
        await asyncio.sleep(0.05)
        store.busy = False
        later = [asyncio.ensure_future(funnel.submit(i)) for i in (2, 3, 4)]
        await asyncio.sleep(0.05)
        store.gate.set()
        assert await asyncio.gather(first, *later) == [10, 20, 30, 40]

    asyncio.run(main())
    funnel.close()
    # nothing overtook the write in flight; the three waiting shared one transaction
    assert store.batches == [("thread", [1]), ("thread", [2, 3, 4])]


def test_every_run_of_inline_writes_lets_one_through_the_thread() -> None:
    """Inline writes do not checkpoint the WAL; a write through the thread does."""
    store = Store()
    funnel = WriteFunnel(store.thread, inline=store.inline)
    runs = INLINE_RUN

    async def main() -> None:
        for i in range(2 * runs + 2):
            await funnel.submit(i)

    asyncio.run(main())
    funnel.close()
    ways = [way for way, _ in store.batches]
    assert ways.count("thread") == 2 and ways[runs] == ways[2 * runs + 1] == "thread"


def test_a_store_call_inline_first_then_on_a_thread() -> None:
    """The fused hop's call: on the loop when the lock is free, else on a thread; every
    run of inline calls lets one through the thread; without an inline way, the thread."""
    store = Store()
    ways: list[str] = []

    def threaded(i: int) -> int:
        ways.append("main" if threading.current_thread() is threading.main_thread()
                    else "thread")
        return i

    def inline(i: int) -> int:
        if store.busy:
            raise StoreBusy()
        ways.append("inline")
        return i

    first, only_thread = InlineFirst(inline, threaded), InlineFirst(None, threaded)

    async def main() -> None:
        assert await first(1) == 1
        store.busy = True
        assert await first(2) == 2
        store.busy = False
        for i in range(INLINE_RUN + 1):
            await first(i)
        assert await only_thread(7) == 7

    asyncio.run(main())
    assert ways[:2] == ["inline", "thread"] and ways[-1] == "thread"
    assert ways[2:-1].count("thread") == 1 and ways[2 + INLINE_RUN] == "thread"


def test_unpinned_raw_connections_go_back_to_the_pool(tmp_path) -> None:
    """Calls from many threads (the peer route's thread pool) each take a connection for
    their transaction and give it back; pinned ones would keep the pool empty."""
    from concurrent.futures import ThreadPoolExecutor

    import pytest
    from sqlalchemy import create_engine, exc

    from services.common.db import RawConnections

    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}", pool_size=2, max_overflow=0,
                           pool_timeout=0.5, connect_args={"check_same_thread": False})

    def one(raw: RawConnections, barrier: threading.Barrier) -> int:
        """A transaction, then stay alive until three threads have made theirs."""
        try:
            with raw.transaction() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone()[0]
        finally:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()

    def three_threads(raw: RawConnections) -> list:
        barrier = threading.Barrier(3, timeout=3)
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(one, raw, barrier) for _ in range(3)]
            return [f.exception() or f.result() for f in futures]

    assert three_threads(RawConnections(engine, pinned=False)) == [1, 1, 1]
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]  # a QueuePool here
    # pinned, the third thread finds the pool of two held by the others
    assert any(isinstance(e, exc.TimeoutError) for e in three_threads(RawConnections(engine)))
    with pytest.raises(AssertionError):
        RawConnections(engine, wait=False, pinned=False)


def test_an_async_store_writes_one_batch_at_a_time_and_groups_what_waits() -> None:
    """On an async store (PostgreSQL's driver): a lone write runs at once; what arrives
    while a write is in flight waits for it and then goes as ONE batch; a failed batch
    fails each of its callers; one transaction at a time."""
    batches: list[list[int]] = []
    release = asyncio.Event()
    active = 0

    async def process(items: Sequence[int]) -> list[int | Exception]:
        nonlocal active
        active += 1
        assert active == 1, "two transactions at once"
        batches.append(list(items))
        if items == [1]:
            await release.wait()  # the first write is slow: the others queue behind it
        await asyncio.sleep(0)
        active -= 1
        if 99 in items:
            raise ConnectionError("store gone")
        return [ValueError(i) if i < 0 else i * 10 for i in items]

    funnel = WriteFunnel(process)

    async def main() -> None:
        first = asyncio.ensure_future(funnel.submit(1))
        await asyncio.sleep(0)
        rest = []
        for i in (2, -3, 4):  # arriving over several turns of the loop
            rest.append(asyncio.ensure_future(funnel.submit(i)))
            for _ in range(3):
                await asyncio.sleep(0)
        assert batches == [[1]]  # nothing else started while the first is in flight
        release.set()
        assert await first == 10
        results = await asyncio.gather(*rest, return_exceptions=True)
        assert results[0] == 20 and results[2] == 40
        assert isinstance(results[1], ValueError) and results[1].args == (-3,)
        assert batches == [[1], [2, -3, 4]]
        release.clear()
        slow = asyncio.ensure_future(funnel.submit(1))
        await asyncio.sleep(0)
        failing = [asyncio.ensure_future(funnel.submit(i)) for i in (5, 99)]
        await asyncio.sleep(0)
        release.set()
        assert await slow == 10
        outcome = await asyncio.gather(*failing, return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in outcome), outcome
        assert batches[-1] == [5, 99]

    asyncio.run(main())
    funnel.close()


def test_a_postgres_batch_runs_its_steps_in_lockstep() -> None:
    """``PgTransaction.run_all``: a round's statements go in the batch's order, those of
    one SQL text together (one round trip); a generator's refusal is its own result;
    deferred statements follow at the end in the order their generators finished.
    Statements go to asyncpg in PostgreSQL's placeholder style."""
    from services.common.db import Deferred, PgTransaction
    from services.common.errors import Conflict

    class Conn:  # what PgTransaction uses of an asyncpg connection
        def __init__(self) -> None:
            self.sent: list[tuple[str, list]] = []  # each a round trip

        async def fetchrow(self, sql: str, *args: object) -> tuple:
            self.sent.append((sql, [args]))
            return (sql, args)

        async def fetchmany(self, sql: str, args: list) -> list[tuple]:
            self.sent.append((sql, list(args)))
            return [(sql, a) for a in args]

    def steps(name: str, second: bool):
        row = yield "first %s", (name,)
        assert row == ("first $1", (name,))
        if name == "b":
            raise Conflict("NO", "refused")
        if second:
            yield f"{name}2 %(x)s %(y)s %(x)s", {"y": 2, "x": 3}
        return Deferred(("tail %s", (name,)), lambda r: (name, r[1]))

    conn = Conn()
    tx = PgTransaction(conn)

    async def main() -> list:
        out = await tx.run_all([steps("a", True), steps("b", False), steps("c", False)])
        await tx.finish()
        return out

    out = asyncio.run(main())
    assert conn.sent == [("first $1", [("a",), ("b",), ("c",)]),
                         ("a2 $1 $2 $1", [(3, 2)]),
                         ("tail $1", [("c",), ("a",)])]
    assert isinstance(out[1], Conflict)
    assert [out[0].value, out[2].value] == [("a", ("a",)), ("c", ("c",))]


def test_statements_sent_together_must_each_return_a_row() -> None:
    """``rows_of`` cannot pair rows with statements when one returned none: it says so."""
    from services.common.db import rows_of

    class Conn:
        async def fetchmany(self, sql: str, args: list) -> list[tuple]:
            return [(1,)]  # two statements, one row

    with pytest.raises(RuntimeError, match="each must return one row"):
        asyncio.run(rows_of(Conn(), [("s %s", (1,)), ("s %s", (2,))]))


def test_the_async_driver_connects_with_libpq_parameters_in_the_url() -> None:
    """An operator's URL may carry libpq's own parameters (``connect_timeout``...), which
    asyncpg would pass to the server as settings and the server refuse: they are left to
    the engine, the others (``application_name``) kept."""
    import os

    from sqlalchemy import create_engine

    from services.common.db import AsyncPg
    from tests.stack import backend_env

    backend_env("postgres")  # skips where no PostgreSQL is configured
    url = (os.environ["EHC_TEST_DATABASE_URL"] + "?connect_timeout=5&application_name=ehc-t"
           "&keepalives=1")
    engine = create_engine(url)
    pg = AsyncPg(engine, autocommit=True)
    try:
        row = asyncio.run(pg.first_row(("SELECT current_setting('application_name')", ())))
        assert row[0] == "ehc-t"
    finally:
        pg.drop()
        engine.dispose()


def test_both_drivers_reach_postgresql_over_its_unix_socket() -> None:
    """``EHC_DATABASE_URL=postgresql+psycopg://user@/db?host=/var/run/postgresql`` (the
    operators' guide: PostgreSQL on the servers' host): the pools (psycopg) and the hot
    path (asyncpg) both connect over the socket, not TCP (``inet_server_addr()`` is NULL
    on a Unix socket)."""
    import os

    from sqlalchemy import create_engine
    from sqlalchemy.engine import URL, make_url

    from services.common.db import AsyncPg
    from tests.stack import backend_env

    backend_env("postgres")  # skips where no PostgreSQL is configured
    socket_dir = "/var/run/postgresql"
    tcp = make_url(os.environ["EHC_TEST_DATABASE_URL"])
    if not os.path.exists(f"{socket_dir}/.s.PGSQL.{tcp.port or 5432}"):
        pytest.skip(f"this PostgreSQL has no Unix socket in {socket_dir}")
    url = URL.create(tcp.drivername, tcp.username, tcp.password, database=tcp.database,
                     query={**tcp.query, "host": socket_dir})
    engine = create_engine(url)
    pg = AsyncPg(engine, autocommit=True)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT inet_server_addr()").scalar() is None
        assert asyncio.run(pg.first_row(("SELECT inet_server_addr()", ())))[0] is None
    finally:
        pg.drop()
        engine.dispose()
