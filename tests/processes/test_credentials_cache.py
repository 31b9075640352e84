"""The callers' credentials cache, as two processes see one store (two ``Callers`` on one
SQLite file): a credential is read once while nothing changes, however long it is used
(a province's terminals scan minutes apart, so a per-terminal expiry missed nearly every
scan), and a change made through either process is seen by the other within ``ttl_s``;
a change made between a read and its caching does not stay cached."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine

from services.common.cards.callers import Callers, Terminal, caller_tables
from services.common.errors import RateLimited, Unauthenticated
from services.common.pii import FieldCipher
from services.common.shared_store import DatabaseStore, RedisStore
from services.common.signing import Admission, sign_headers

TTL_S = 0.2


@pytest.fixture
def two_processes(tmp_path: Path):
    metadata = MetaData()
    tables = caller_tables(metadata)
    engines = [create_engine(f"sqlite:///{tmp_path / 'callers.db'}") for _ in range(2)]
    metadata.create_all(engines[0])
    cipher = FieldCipher(b"k" * 32)
    views = [Callers(e, tables, cipher, max_age_s=300, ttl_s=TTL_S,
                     store=DatabaseStore(e, tables.shared_events)) for e in engines]
    yield views
    for engine in engines:
        engine.dispose()


def _counting_loads(callers: Callers) -> list[str]:
    loads: list[str] = []
    real = callers._load_terminal

    def load(terminal_id: str):
        loads.append(terminal_id)
        return real(terminal_id)
    callers._load_terminal = load  # type: ignore[method-assign]
    return loads


def test_a_credential_is_read_once_while_nothing_changes(two_processes) -> None:
    admin, scanner = two_processes
    admin.add_institution("330100000001", "H", "330100", None)
    tid, secret = admin.add_terminal("330100000001", "0101", 2)
    loads = _counting_loads(scanner)
    until = time.monotonic() + 4 * TTL_S  # four windows of the old per-key expiry
    while time.monotonic() < until:
        term = scanner.terminal(tid)
        assert term is not None and term.secret == secret
        time.sleep(TTL_S / 10)
    assert loads == [tid]
    assert scanner.terminal("330100000001" + "0999") is None  # unknown: cached too
    assert scanner.terminal("330100000001" + "0999") is None
    assert loads == [tid, "3301000000010999"]


def test_a_change_through_one_process_reaches_the_other_within_ttl(two_processes) -> None:
    admin, scanner = two_processes
    admin.add_institution("330100000001", "H", "330100", None)
    tid, _ = admin.add_terminal("330100000001", "0101", 2)
    new = "330100000001" + "0102"
    assert scanner.terminal(tid) is not None and scanner.terminal(new) is None
    admin.set_active("terminal", tid, False)
    admin.add_terminal("330100000001", "0102", 2)
    time.sleep(TTL_S * 1.2)
    assert scanner.terminal(tid) is None and scanner.terminal(new) is not None
    admin.set_active("terminal", tid, True)
    rotated = admin.rotate("terminal", tid)
    time.sleep(TTL_S * 1.2)
    term = scanner.terminal(tid)
    assert term is not None and term.secret == rotated
    app_key, _ = scanner.add_app("app", None)  # a change in this process: seen at once
    assert scanner.app(app_key) is not None
    scanner.set_active("app", app_key, False)
    assert scanner.app(app_key) is None


def test_a_read_overtaken_by_a_change_is_not_kept(two_processes) -> None:
    """A worker thread reads the old row, the change commits and is noticed, then the
    thread caches what it read: the next lookup reads again."""
    admin, scanner = two_processes
    admin.add_institution("330100000001", "H", "330100", None)
    tid, old = admin.add_terminal("330100000001", "0101", 2)
    real = scanner._load_terminal
    rotated: list[str] = []

    def slow_load(terminal_id: str):
        row = real(terminal_id)  # the old secret
        if not rotated:
            rotated.append(admin.rotate("terminal", tid))
            time.sleep(TTL_S * 1.2)
            assert scanner._current_generation() is not None  # the change is noticed
        return row
    scanner._load_terminal = slow_load
    term = scanner.terminal(tid)
    assert term is not None and term.secret == old  # what it read, answered once
    term = scanner.terminal(tid)
    assert term is not None and term.secret == rotated[0]


def test_a_new_store_is_made_with_its_generation_and_each_change_bumps_it(
        two_processes) -> None:
    admin, scanner = two_processes
    assert admin._current_generation() == 0  # the row came with the table (create_all)
    admin.add_institution("330100000001", "H", "330100", None)
    admin.add_terminal("330100000001", "0101", 2)
    assert admin._current_generation() == 2  # this process's change: at once
    time.sleep(TTL_S)
    assert scanner._current_generation() == 2


def _on_a_thread(obj: object, name: str) -> list[bool]:
    """Whether each call of ``obj.<name>`` ran on the event loop's thread."""
    on_loop: list[bool] = []
    real = getattr(obj, name)

    def watched(*args):
        on_loop.append(threading.current_thread() is threading.main_thread())
        return real(*args)
    setattr(obj, name, watched)
    return on_loop


def test_the_hot_path_reads_the_store_off_the_event_loop(two_processes) -> None:
    """The fast path authenticates on the event loop: a credential not held and the
    generation when due are read in a thread (a slow store would otherwise stall every
    request of the process), and a credential held is answered without either."""
    admin, scanner = two_processes
    admin.add_institution("330100000001", "H", "330100", None)
    tid, secret = admin.add_terminal("330100000001", "0101", 2)
    loads, reads = _on_a_thread(scanner, "_load_terminal"), _on_a_thread(
        scanner, "_read_generation")

    async def scan() -> Terminal:
        body = b'{"qr_text": "x"}'
        headers = {k.lower(): v for k, v in sign_headers(
            tid, "POST", "/ehc/v1/qrcodes/verify", body, secret=secret).items()}
        term, admission = await scanner.authenticate_scan(
            headers, "POST", "/ehc/v1/qrcodes/verify", "", body)
        assert admission is not None and admission.token.startswith(f"nonce:{tid}:")
        return term

    assert asyncio.run(scan()).secret == secret
    assert loads == [False] and reads == [False]  # both read, neither on the loop
    assert asyncio.run(scan()).terminal_id == tid
    assert loads == [False] and reads == [False]  # held: no read at all
    admin.set_active("terminal", tid, False)
    time.sleep(TTL_S * 1.2)
    with pytest.raises(Unauthenticated) as refused:
        asyncio.run(scan())
    assert refused.value.code == "UNKNOWN_TERMINAL"  # the other process's change, seen
    assert loads == [False, False] and reads == [False, False]


def test_a_generation_read_overtaken_by_this_process_change_is_not_kept(
        two_processes) -> None:
    """The loop's generation read is in flight when this process changes a credential:
    what it read is older than the change, so the next lookup reads again."""
    admin, scanner = two_processes
    admin.add_institution("330100000001", "H", "330100", None)
    real = scanner._read_generation

    def read_then_change() -> int | None:
        seen = real()
        if not changed:
            changed.append(scanner.add_terminal("330100000001", "0101", 2))
        return seen
    changed: list[tuple[str, str]] = []
    scanner._read_generation = read_then_change

    async def generation() -> int | None:
        return await scanner._generation_now()
    assert asyncio.run(generation()) is None  # what it read is not kept (nothing known)
    assert changed and asyncio.run(generation()) == 2  # read again at once, not after ttl_s
    assert asyncio.run(scanner._cached_now(scanner._terminals, changed[0][0],
                                           scanner._load_terminal)) is not None


def test_with_redis_the_hot_path_claims_and_counts_on_the_asyncio_client(
        two_processes) -> None:
    """With Redis as the shared store the fast path settles the nonce and the rate count
    itself: on redis-py's asyncio client, never the blocking one on the loop; a replayed
    request and one over the rate are refused as on the framework's routes, and the
    blocking client (the framework's thread pool) shares the same window."""
    url = os.environ.get("EHC_TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis tests need EHC_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
    admin, scanner = two_processes
    admin.add_institution("330100000001", "H", "330100", None)
    tid, secret = admin.add_terminal("330100000001", "0101", 2)
    store = RedisStore(url, f"test{uuid.uuid4().hex[:8]}")
    scanner.store, scanner.terminal_rate = store, 1.5  # three requests a 2-second window
    blocking = {name: _on_a_thread(store, name) for name in ("claim", "pace")}
    body = b'{"qr_text": "x"}'
    path = "/ehc/v1/qrcodes/verify"

    async def scan(headers: dict[str, str]) -> Admission | None:
        _, admission = await scanner.authenticate_scan(headers, "POST", path, "", body)
        return admission

    def signed() -> dict[str, str]:
        return {k.lower(): v for k, v in sign_headers(tid, "POST", path, body,
                                                      secret=secret).items()}
    first = signed()
    assert asyncio.run(scan(first)) is None  # settled here: nothing left to the batch
    with pytest.raises(Unauthenticated) as replayed:
        asyncio.run(scan(first))
    assert replayed.value.code == "SIGNATURE_REPLAYED"
    asyncio.run(scan(signed()))
    assert store.pace("rate:" + tid, 2.0, 3) == 0.0  # the third, through the other client
    with pytest.raises(RateLimited) as limited:
        asyncio.run(scan(signed()))
    assert limited.value.code == "RATE_LIMITED"
    assert 0 < int((limited.value.headers or {})["Retry-After"]) <= 2
    # the blocking client: only the test's own take, never from the scans
    assert blocking == {"claim": [], "pace": [True]}


def test_an_unreachable_redis_is_a_store_fault_of_the_hot_path(two_processes) -> None:
    """Redis down (nothing listens): the scan's authentication fails with redis-py's
    connection error, which the fast path answers as 503 STORE_UNAVAILABLE (as a store
    that does not answer), not as a server error."""
    from services.common.errors import store_fault

    admin, scanner = two_processes
    admin.add_institution("330100000001", "H", "330100", None)
    tid, secret = admin.add_terminal("330100000001", "0101", 2)
    scanner.store = RedisStore("redis://127.0.0.1:1/0", "down")
    body, path = b"{}", "/ehc/v1/qrcodes/verify"
    headers = {k.lower(): v for k, v in sign_headers(tid, "POST", path, body,
                                                     secret=secret).items()}
    with pytest.raises(Exception) as failed:
        asyncio.run(scanner.authenticate_scan(headers, "POST", path, "", body))
    fault = store_fault(failed.value)
    assert type(failed.value).__module__.startswith("redis")
    assert fault is not None and (fault.status, fault.code) == (503, "STORE_UNAVAILABLE")
    assert store_fault(ConnectionError()) is None  # the built-in one is not the store's
