"""Replays across workers and hosts (issue 16): one signed request is accepted once, by
whichever of two workers (or two server processes on one database) sees it first; a
disabled or rotated credential is refused by every worker within a second. On SQLite, on
PostgreSQL (``EHC_TEST_DATABASE_URL``) and with Redis (``EHC_TEST_REDIS_URL``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import Engine, Table

from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from services.common.signing import sign_headers
from services.sdk import AdminClient, ChannelClient, SdkError, TerminalClient, generate_residents
from services.sdk.stack import prepare_store, spawn_server, stop_server
from tests.stack import backend_env, drop_backend, free_port

REDIS_ENV = "EHC_TEST_REDIS_URL"


def store_env(store: str, var: Path) -> dict[str, str]:
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
           "EHC_SYNC_INTERVAL_S": "0"}
    env.pop("EHC_REDIS_URL", None)
    if store == "redis":
        if not os.environ.get(REDIS_ENV):
            pytest.skip(f"Redis tests need {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0)")
        env["EHC_REDIS_URL"] = os.environ[REDIS_ENV]
        env["EHC_REDIS_PREFIX"] = f"test{uuid.uuid4().hex[:8]}"  # a fresh deployment
        return env
    return {**env, **backend_env(store)}


@dataclass
class Deployment:
    urls: list[str]  # two ports of one store: two workers behind one, or two servers
    admin: AdminClient
    app: ChannelClient
    term: TerminalClient
    card_id: str


def _settings(env: dict[str, str]) -> Settings:
    return Settings(var_dir=Path(env["EHC_VAR_DIR"]), database_url=env.get("EHC_DATABASE_URL"),
                    db_schema_prefix=env.get("EHC_DB_SCHEMA_PREFIX", ""))


@pytest.fixture(scope="module", params=["sqlite", "postgres", "redis"])
def deployment(request, tmp_path_factory) -> Iterator[Deployment]:
    env = store_env(request.param, tmp_path_factory.mktemp("var"))
    token = prepare_store(_settings(env))
    ports = [free_port(), free_port()]
    # one server with two workers, and a second server process on the same store
    procs = [spawn_server(env, ports[0], "--workers", "2", stdout=subprocess.DEVNULL),
             spawn_server(env, ports[1], stdout=subprocess.DEVNULL)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    admin = AdminClient(urls[0], token)
    try:
        person = next(iter(generate_residents(1, seed=16)))
        admin.add_residents([{"id_type": "01", "id_number": person.id_number,
                              "name": person.name, "phone": person.phone}])
        admin.add_hospital("330100000016", "Replay hospital", "330100")
        cred = admin.add_shared_terminal("330100000016", "0101", 2)
        app_cred = admin.add_shared_app("replay test app")
        term = TerminalClient(urls[0], cred["terminal_id"], cred["secret"],
                              city_code="330100", terminal_type=2)
        app = ChannelClient(urls[0], app_cred["app_key"], app_cred["app_secret"])
        card = app.apply("01", person.id_number, person.name, person.phone)
        yield Deployment(urls, admin, app, term, card["card_id"])
    finally:
        for proc in procs:
            stop_server(proc)
        drop_backend(env)
        assert deployment_secret(_settings(env), "admin_token") == token


def signed_copy(d: Deployment, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    return {**sign_headers(d.app.key, method, path, body, secret=d.app.secret),
            "Content-Type": "application/json"}


def test_one_signed_request_is_accepted_once_by_two_workers_and_two_servers(
        deployment: Deployment) -> None:
    d = deployment
    path = f"/ehc/v1/cards/{d.card_id}"
    headers = signed_copy(d, "GET", path)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: httpx.get(d.urls[i % 2] + path, headers=headers),
                                range(12)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [401] * 11, codes
    assert {r.json()["code"] for r in answers if r.status_code == 401} == {"SIGNATURE_REPLAYED"}


def test_a_captured_unlock_does_not_bring_a_lost_card_back(deployment: Deployment) -> None:
    d = deployment
    d.app.report_lost(d.card_id)
    path = f"/ehc/v1/cards/{d.card_id}/unlock"
    captured = signed_copy(d, "POST", path)
    assert httpx.post(d.urls[0] + path, headers=captured).status_code == 200
    d.app.report_lost(d.card_id)
    for url in d.urls * 3:
        replay = httpx.post(url + path, headers=captured)
        assert replay.status_code == 401 and replay.json()["code"] == "SIGNATURE_REPLAYED"
    assert d.app.card(d.card_id)["state"] == 2  # still lost
    d.app.unlock(d.card_id)


def _verify_everywhere(d: Deployment, term: TerminalClient) -> set[str]:
    """Outcome codes of verifications sent to each port several times (both workers)."""
    seen = set()
    for url in d.urls * 4:
        one = TerminalClient(url, term.terminal_id, term.secret, city_code=term.city_code,
                             terminal_type=term.terminal_type)
        try:
            one.verify(d.app.qrcode(d.card_id)["qr_text"])
            seen.add("OK")
        except SdkError as exc:
            seen.add(exc.code)
        finally:
            one.close()
    return seen


def test_disable_enable_and_rotate_reach_every_worker_within_a_second(
        deployment: Deployment) -> None:
    d, key = deployment, deployment.term.terminal_id
    assert _verify_everywhere(d, d.term) == {"OK"}
    d.admin.set_active("terminals", key, False)
    time.sleep(1.1)
    assert _verify_everywhere(d, d.term) == {"UNKNOWN_TERMINAL"}
    listed = {t["terminal_id"]: t for t in d.admin.credentials("terminals")}
    assert listed[key]["active"] is False and "secret_enc" not in listed[key]
    d.admin.set_active("terminals", key, True)
    time.sleep(1.1)
    assert _verify_everywhere(d, d.term) == {"OK"}
    new_secret = d.admin.rotate("terminals", key)
    time.sleep(1.1)
    assert _verify_everywhere(d, d.term) == {"SIGNATURE_INVALID"}
    d.term.secret = new_secret
    assert _verify_everywhere(d, d.term) == {"OK"}
    with pytest.raises(SdkError) as info:
        d.admin.set_active("terminals", "330100000016" + "9999", False)
    assert info.value.code == "CREDENTIAL_NOT_FOUND"


def test_ehc_credentials_commands(deployment: Deployment) -> None:
    d = deployment
    run = [sys.executable, "-m", "twin.cli", "credentials"]
    token = ["--url", d.urls[0], "--admin-token", d.admin.token]
    out = subprocess.run([*run, "list", "--kind", "channel-apps", *token],
                         capture_output=True, text=True, check=True).stdout
    assert d.app.key in out and str(d.app.secret) not in out
    subprocess.run([*run, "disable", d.app.key, *token], check=True, capture_output=True)
    time.sleep(1.1)
    with pytest.raises(SdkError) as info:
        d.app.card(d.card_id)
    assert info.value.code == "UNKNOWN_APP"
    subprocess.run([*run, "enable", d.app.key, *token], check=True, capture_output=True)
    rotated = subprocess.run([*run, "rotate", d.app.key, *token], check=True,
                             capture_output=True, text=True).stdout
    d.app.secret = rotated.strip().split()[-1]
    time.sleep(1.1)
    assert d.app.card(d.card_id)["card_id"] == d.card_id
    bad = subprocess.run([*run, "disable", "app_0000000000000000", *token],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "CREDENTIAL_NOT_FOUND" in bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr


def test_signing_body_is_bound(deployment: Deployment) -> None:
    """A captured signature does not carry over to another body (sanity of the replay
    tests above: they replay exact copies)."""
    d = deployment
    path = f"/ehc/v1/cards/{d.card_id}"
    body = orjson.dumps({"phone": "13800000000"})
    headers = signed_copy(d, "PATCH", path, body)
    other = orjson.dumps({"phone": "13900000000"})
    resp = httpx.patch(d.urls[1] + path, content=other, headers=headers)
    assert resp.status_code == 401 and resp.json()["code"] == "SIGNATURE_INVALID"


def test_login_throttles_are_shared_by_every_worker(deployment: Deployment) -> None:
    """Codes asked for one identity through both servers (three workers in all): the
    fourth is refused, wherever it lands."""
    d = deployment
    person = next(iter(generate_residents(1, seed=16)))
    statuses = []
    for i in range(5):
        resp = httpx.post(d.urls[i % 2] + "/channel/v1/login/code", json={
            "id_type": "01", "id_number": person.id_number, "name": person.name})
        statuses.append(resp.status_code)
    assert statuses == [202, 202, 202, 429, 429], statuses


def test_applying_for_anothers_card_is_refused_on_every_worker(deployment: Deployment) -> None:
    d = deployment
    person = next(iter(generate_residents(1, seed=16)))
    other = d.admin.add_shared_app("another app")
    for url in d.urls * 2:
        with ChannelClient(url, other["app_key"], other["app_secret"]) as app:
            with pytest.raises(SdkError) as info:
                app.apply("01", person.id_number, person.name)
            assert info.value.code == "CONSENT_REQUIRED"


def test_one_signed_scan_is_verified_once_by_two_workers_and_two_servers(
        deployment: Deployment) -> None:
    """The hot path writes the nonce in the scan's own transaction (database store) or
    in Redis: either way one signed scan sent twelve times is verified once."""
    d = deployment
    body = orjson.dumps(d.term.verify_body(d.app.qrcode(d.card_id)["qr_text"]))
    headers = {**sign_headers(d.term.terminal_id, "POST", "/ehc/v1/qrcodes/verify", body,
                              secret=d.term.secret), "Content-Type": "application/json"}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(
            lambda i: httpx.post(d.urls[i % 2] + "/ehc/v1/qrcodes/verify", content=body,
                                 headers=headers), range(12)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [401] * 11, [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 401} == {"SIGNATURE_REPLAYED"}


def test_code_refreshes_and_scans_at_once_through_every_process(
        deployment: Deployment) -> None:
    """The code refresh on the hot path: one signed refresh sent twelve times at once is
    answered once (alone, a refresh is written in autocommit on PostgreSQL); then sixteen
    refreshes and scans at once, which the hot path writes in batches together, are
    each answered, every scan with its usage record."""
    d = deployment
    path = f"/ehc/v1/cards/{d.card_id}/qrcode"
    headers = sign_headers(d.app.key, "GET", path, query="kind=dynamic", secret=d.app.secret)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda i: httpx.get(
            d.urls[i % 2] + path, params={"kind": "dynamic"}, headers=headers), range(12)))
    assert sorted(r.status_code for r in answers) == [200] + [401] * 11
    assert {r.json()["code"] for r in answers if r.status_code == 401} == {"SIGNATURE_REPLAYED"}
    before = len(d.term.usage_records(limit=1000))
    codes = [d.app.qrcode(d.card_id)["qr_text"] for _ in range(8)]

    def call(i: int) -> str:
        url = d.urls[i // 2 % 2]
        if i % 2 == 0:
            with ChannelClient(url, d.app.key, d.app.secret) as app:
                return app.qrcode(d.card_id)["qr_text"]
        with TerminalClient(url, d.term.terminal_id, d.term.secret, city_code="330100",
                            terminal_type=2) as term:
            return term.verify(codes[i // 2])["card_id"]

    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(call, range(16)))
    assert done[1::2] == [d.card_id] * 8 and all(done[0::2])
    assert len(d.term.usage_records(limit=1000)) == before + 8


def test_scans_at_once_through_every_process_keep_one_audit_chain(
        deployment: Deployment) -> None:
    """A new institution's first scans of the day, sixteen at once through two workers
    and a second server: each chain head is made once and moved one scan at a time (the
    day's audit holds, the chain as long as the scans)."""
    d = deployment
    code = f"3301{uuid.uuid4().int % 10**8:08d}"
    d.admin.add_hospital(code, "Chain hospital", "330100")
    cred = d.admin.add_shared_terminal(code, "0101", 2)
    term = TerminalClient(d.urls[0], cred["terminal_id"], cred["secret"],
                          city_code="330100", terminal_type=2)
    bodies = [orjson.dumps(term.verify_body(d.app.qrcode(d.card_id)["qr_text"]))
              for _ in range(16)]

    def scan(i: int) -> int:
        headers = {**sign_headers(term.terminal_id, "POST", "/ehc/v1/qrcodes/verify",
                                  bodies[i], secret=term.secret),
                   "Content-Type": "application/json"}
        return httpx.post(d.urls[i % 2] + "/ehc/v1/qrcodes/verify", content=bodies[i],
                          headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(scan, range(16))) == [200] * 16
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))  # CST
    report = d.admin.audit(day)
    assert report["clean"], report
    assert len(term.usage_records(limit=100)) == 16


def test_bookings_and_bills_hold_across_workers_and_servers(deployment: Deployment) -> None:
    """The hospital service behind two workers and a second server on one store: twelve
    cards booking a slot of three at once through both get three bookings; eight bill
    requests for one card at once get one bill."""
    from services.sdk import HospitalClient

    d = deployment
    h = HospitalClient(d.urls[0], d.admin.token)
    dept = f"{uuid.uuid4().int % 10**4:04d}"
    h.add_department(dept, "内科")
    doctor = uuid.uuid4().hex[:12]
    h.add_doctor(doctor, dept, "孙医生")
    sid = h.add_session(doctor, "2031-09-01", "08:00", "09:00", per_slot=5,
                        walk_in_share=0.4, drill=True)  # 3 may book a slot
    cards = [uuid.uuid4().hex.upper() * 2 for _ in range(12)]

    def book(i: int) -> int:
        with HospitalClient(d.urls[i % 2], d.admin.token) as one:
            try:
                one.book(sid, "08:30", cards[i])
                return 201
            except SdkError as exc:
                assert exc.code == "SLOT_FULL", exc.code
                return exc.status

    with ThreadPoolExecutor(12) as pool:
        codes = sorted(pool.map(book, range(12)))
    assert codes == [201] * 3 + [409] * 9
    h.charge(cards[0], [{"code": "consultation", "category": "A", "amount_fen": 2_500}])

    def bill(i: int) -> str:
        with HospitalClient(d.urls[i % 2], d.admin.token) as one:
            return one.bill(cards[0])["bill_id"]

    with ThreadPoolExecutor(8) as pool:
        assert len(set(pool.map(bill, range(8)))) == 1


def test_paced_admits_a_burst_then_the_rate() -> None:
    """GCRA: ``limit`` requests at once, then one each ``window / limit`` seconds; a
    refusal moves nothing and says how long to wait."""
    from services.common.shared_store import paced

    tat, now = None, 100.0
    for _ in range(4):  # 4 in a 2-second window: one each 0.5 s
        tat, wait = paced(tat, now, 2.0, 4)
        assert wait == 0.0
    assert paced(tat, now, 2.0, 4) == (tat, pytest.approx(0.5))
    assert paced(tat, now + 0.25, 2.0, 4) == (tat, pytest.approx(0.25))
    assert paced(tat, now + 0.5, 2.0, 4)[1] == 0.0  # one more once 0.5 s passed
    assert paced(tat, now + 60, 2.0, 4) == (now + 60.5, 0.0)  # idle: a full burst again


@contextlib.contextmanager
def store_engine(tmp_path: Path, kind: str) -> Iterator[tuple[Engine, Table]]:
    """A SQLite file, or a PostgreSQL schema of its own dropped after (skipped where no
    PostgreSQL is configured), with the shared store's tables; ``shared_events``."""
    from sqlalchemy import MetaData, create_engine, text

    from services.common.shared_store import shared_events_table

    pg = os.environ.get("EHC_TEST_DATABASE_URL", "")
    if kind == "postgres" and not pg:
        pytest.skip("PostgreSQL tests need EHC_TEST_DATABASE_URL")
    schema = f"store{uuid.uuid4().hex[:8]}"
    engine = create_engine(f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else pg,
                           **({} if kind == "sqlite" else {
                               "connect_args": {"options": f"-csearch_path={schema}"}}))
    if kind == "postgres":
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    metadata = MetaData()
    table = shared_events_table(metadata)
    metadata.create_all(engine)
    try:
        yield engine, table
    finally:
        if kind == "postgres":
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres", "redis"])
def test_every_store_paces_a_caller_alike_in_one_row(tmp_path, kind: str) -> None:
    """Each store admits a burst of ``limit``, then refuses with the wait until the
    next (never more than one interval); two clients of one store share the bucket;
    the database keeps one row a bucket however many requests (so the check costs the
    same at any rate)."""
    from sqlalchemy import text

    from services.common.shared_store import DatabaseStore, MemoryStore, RedisStore

    engine = None
    with contextlib.ExitStack() as cleanup:
        if kind == "memory":
            stores: list = [MemoryStore()] * 2
        elif kind == "redis":
            url = os.environ.get("EHC_TEST_REDIS_URL")
            if not url:
                pytest.skip("Redis tests need EHC_TEST_REDIS_URL")
            prefix = f"pace{uuid.uuid4().hex[:8]}"
            stores = [RedisStore(url, prefix), RedisStore(url, prefix)]
        else:
            engine, table = cleanup.enter_context(store_engine(tmp_path, kind))
            stores = [DatabaseStore(engine, table), DatabaseStore(engine, table)]
        # a burst of 20, then one a second (20 s / 20): the 21st is refused as long as
        # the burst took less than that second, whatever the host's speed
        waits = [stores[i % 2].pace("rate:t", 20.0, 20) for i in range(21)]
        assert waits[:20] == [0.0] * 20, waits  # the burst, through both clients
        assert 0 < waits[20] <= 1.0 + 1e-6, waits  # then one each 20 s / 20
        time.sleep(waits[20] + 0.02)
        assert stores[0].pace("rate:t", 20.0, 20) == 0.0
        assert stores[1].pace("rate:u", 20.0, 20) == 0.0  # another caller's own bucket
        if engine is not None:
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT token FROM shared_paces")).scalars().all()
            assert sorted(rows) == ["pace:rate:t", "pace:rate:u"], rows


def test_the_hot_paths_admission_is_one_round_trip_to_redis() -> None:
    """With Redis the hot path claims a signed request's nonce and moves its caller's
    paced bucket in one script: one command a request on the event loop's client (two
    before, a scan's refresh and verification four), with the same answers: admitted,
    a used nonce refused whatever the bucket, then the wait once the burst is spent, and
    no pace for a caller without a limit. The sync client sees the same keys."""
    import asyncio

    from services.common.shared_store import RedisStore

    url = os.environ.get("EHC_TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis tests need EHC_TEST_REDIS_URL")
    store = RedisStore(url, f"admit{uuid.uuid4().hex[:8]}")

    async def admissions() -> tuple[list[float | None], int]:
        await store.admit_async("warm", 60, "rate:w", 2.0, 3)  # the script loaded once
        client, _ = store._on_loop()
        sent = 0
        send = client.execute_command

        async def counted(*args, **kwargs):
            nonlocal sent
            sent += 1
            return await send(*args, **kwargs)
        client.execute_command = counted
        waits = [await store.admit_async(f"n{i}", 60, "rate:t", 2.0, 3) for i in range(3)]
        waits.append(await store.admit_async("n0", 60, "rate:t", 2.0, 3))  # used
        waits.append(await store.admit_async("n3", 60, "rate:t", 2.0, 3))  # over
        waits.append(await store.admit_async("n4", 60, "rate:free", 2.0, 0))
        return waits, sent
    waits, sent = asyncio.run(admissions())
    assert sent == 6  # one round trip each
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] is None
    assert waits[4] is not None and 0 < waits[4] <= 2 / 3 + 1e-6 and waits[5] == 0.0
    assert not store.claim("n1", 60) and store.claim("n5", 60)  # the same claims
    assert store.pace("rate:t", 2.0, 3) > 0  # and the same bucket
    assert store.redis.get(f"{store.prefix}:p:rate:free") is None  # never paced


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_a_store_sweeps_its_expired_nonces_without_holding_its_callers(tmp_path,
                                                                     kind: str) -> None:
    """The shared store sweeps the expired nonces when a pass is due: on SQLite in the
    claim's own transaction; on PostgreSQL beside it, on a connection of its own, so a
    claim does not wait for the sweep, and the sweep does not wait for another
    transaction holding an expired row: it leaves that row to the next pass."""
    from sqlalchemy import text

    from services.common.shared_store import DatabaseStore

    with store_engine(tmp_path, kind) as (engine, table), engine.connect() as holder:
        store = DatabaseStore(engine, table)

        def tokens() -> set[str]:
            with engine.connect() as conn:
                return set(conn.execute(text("SELECT token FROM shared_nonces")).scalars())

        def swept_by_claiming(token: str) -> None:
            store.sweep.next_pass = 0.0  # a pass due now
            claim = ThreadPoolExecutor(1).submit(store.claim, token, 60)
            assert claim.result(timeout=5)  # answered whatever the sweep meets
            if store.postgres:  # the pass beside it ends without waiting on a lock
                assert store.sweeping is not None
                store.sweeping.join(timeout=5)
                assert not store.sweeping.is_alive()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO shared_nonces VALUES ('nonce:old', :t), "
                              "('nonce:held', :t)"), {"t": time.time() - 1})
        if kind == "postgres":  # a transaction holds one expired row
            holder.execute(text("SELECT token FROM shared_nonces WHERE token = 'nonce:held' "
                                "FOR UPDATE")).all()
        swept_by_claiming("nonce:new")
        assert tokens() == ({"nonce:new", "nonce:held"} if kind == "postgres"
                            else {"nonce:new"})
        holder.rollback()
        swept_by_claiming("nonce:newer")  # the next pass takes what was held
        assert tokens() == {"nonce:new", "nonce:newer"}
        assert not store.claim("nonce:new", 60)  # claimed once


def test_a_sweep_beside_the_batches_never_waits_on_one(tmp_path) -> None:
    """PostgreSQL: a batch may write expired rows, several paced buckets whose callers
    came back after a pause. The sweep's ``DELETE`` beside it skips the rows the batch
    holds: had it waited on one while holding the others it had deleted, the batch coming
    to those would wait on the sweep, a deadlock PostgreSQL breaks after a second (seen
    under load: a batch of scans a second late)."""
    from sqlalchemy import text

    from services.common.shared_store import DatabaseStore, sweep_with

    with store_engine(tmp_path, "postgres") as (engine, table), engine.connect() as batch:
        store = DatabaseStore(engine, table)
        now = time.time()
        with engine.begin() as conn:  # 'b' first: the sweep's scan meets it first
            for token in ("pace:b", "pace:a"):
                conn.execute(text("INSERT INTO shared_paces VALUES (:k, :t)"),
                             {"k": token, "t": now - 1})
        move = text("UPDATE shared_paces SET expires_at = :t WHERE token = :k")
        batch.execute(move, {"k": "pace:a", "t": now + 60})  # the batch holds 'a'
        store.sweep.next_pass = 0.0
        sweeping = sweep_with(engine, None, store.sweep.steps(now, dict.fromkeys(
            store.sweep.first, now)))
        assert sweeping is not None
        sweeping.join(timeout=5)
        assert not sweeping.is_alive()  # done without waiting for the batch
        started = time.monotonic()
        assert batch.execute(move, {"k": "pace:b", "t": now + 60}).rowcount == 0  # swept
        batch.commit()
        assert time.monotonic() - started < 0.5
        with engine.connect() as conn:
            assert conn.execute(text("SELECT token FROM shared_paces")).scalars().all() == [
                "pace:a"]
