"""A store that is locked or cannot be reached: requests answer 503 STORE_UNAVAILABLE
within a bounded time, the event loop stays free (liveness answers at once), readiness
says which store is down, and start-up with a wrong database URL is one line naming the
problem, never a traceback or a password."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import pytest

from services.sdk import SdkError
from tests.conftest import seeded_world
from tests.stack import PG_ENV, Kept, free_port, make_test_settings, start_stack

TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def locked_world(tmp_path_factory):
    settings = make_test_settings(tmp_path_factory.mktemp("var"), store_timeout_s=TIMEOUT_S,
                                  sync_interval_s=0)
    live = start_stack(settings)
    world = seeded_world(live, residents=4)
    yield live, world
    live.stop()


def _hold_exclusive(path, release: threading.Event, held: threading.Event) -> None:
    """What another process holding the file does: BEGIN EXCLUSIVE until told."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    held.set()
    release.wait(30)
    conn.execute("ROLLBACK")
    conn.close()


def test_a_locked_store_answers_503_in_bounded_time_and_never_blocks_the_loop(
        locked_world) -> None:
    live, world = locked_world
    person = world.residents[0]
    card = world.app.apply("01", person.id_number, person.name)
    assert httpx.get(f"{live.url}/readyz").json()["ready"] is True
    release, held = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_exclusive, args=(
        live.settings.var_dir / "healthcard.db", release, held))
    holder.start()
    held.wait(5)
    try:
        outcome: dict = {}

        def scan() -> None:
            started = time.monotonic()
            try:
                world.term_a.verify(world.app.qrcode(card["card_id"])["qr_text"])
                outcome["code"] = "OK"
            except SdkError as exc:
                outcome["code"], outcome["status"] = exc.code, exc.status
            outcome["took"] = time.monotonic() - started

        scanner = threading.Thread(target=scan)
        scanner.start()
        time.sleep(0.1)  # the scan is waiting for the lock now
        started = time.monotonic()
        alive = httpx.get(f"{live.url}/healthz", timeout=5)
        assert alive.status_code == 200 and time.monotonic() - started < TIMEOUT_S / 2
        ready = httpx.get(f"{live.url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["code"] == "STORE_UNAVAILABLE"
        assert "healthcard" in ready.json()["message"] and ready.headers["Retry-After"]
        scanner.join(20)
        assert (outcome["code"], outcome["status"]) == ("STORE_UNAVAILABLE", 503), outcome
        assert outcome["took"] < TIMEOUT_S * 3 + 1
    finally:
        release.set()
        holder.join(10)
    # the lock gone, the same network serves again
    answer = world.term_a.verify(world.app.qrcode(card["card_id"])["qr_text"])
    assert answer["card_id"] == card["card_id"]
    assert httpx.get(f"{live.url}/readyz").status_code == 200


BAD_URLS = pytest.mark.parametrize("url,named", [
    ("postgresql+psycopg://ehc:s3cret-pw@127.0.0.1:{port}/test", "Connection refused"),
    ("nosuch+driver://ehc:s3cret-pw@host/db", "NoSuchModuleError"),
])


@BAD_URLS
def test_start_up_with_a_bad_database_url_is_one_line(tmp_path, url: str, named: str) -> None:
    env = {**os.environ, "EHC_VAR_DIR": str(tmp_path),
           "EHC_DATABASE_URL": url.format(port=free_port())}
    res = subprocess.run([sys.executable, "-m", "twin.cli", "serve", "--port",
                          str(free_port())], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open the store at "), lines
    assert named in lines[0] and "s3cret" not in res.stderr + res.stdout
    assert "Traceback" not in res.stderr


@BAD_URLS
def test_a_load_test_on_a_bad_database_url_stops_at_once(tmp_path, url: str,
                                                           named: str) -> None:
    """``ehc loadtest`` and its capacity report ask the store first: one line naming it
    (no password), exit 2, nothing written, not a traceback minutes later."""
    for command in (["loadtest"], ["loadtest", "capacity", "--rates", "10"]):
        out = tmp_path / command[-1]
        res = subprocess.run([sys.executable, "-m", "twin.cli", *command, "--database-url",
                              url.format(port=free_port()), "--out", str(out)],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cannot open the store at "), lines
        assert named in lines[0] and "s3cret" not in res.stderr + res.stdout
        assert not out.exists()


def test_a_load_test_on_a_store_it_cannot_build_leaves_nothing(tmp_path) -> None:
    """A store that answers but refuses the run's tables (a PostgreSQL role that may not
    create schemas) passes the first check and fails when the stack is made: one line, and
    the run's folder (its ``var/``) is gone with it."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL tests need {PG_ENV}")
    url = make_url(os.environ[PG_ENV])
    engine = create_engine(url)
    with engine.begin() as conn:  # a login without CREATE on the database (PostgreSQL 15)
        if not conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'ehc_no_create'")
                            ).first():
            conn.execute(text("CREATE ROLE ehc_no_create LOGIN"))
    engine.dispose()
    weak = url.set(username="ehc_no_create", password=None).render_as_string(False)
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "twin.cli", "loadtest", "--database-url",
                          weak, "--duration", "5", "--users", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "InsufficientPrivilege" in lines[0], lines
    assert not out.exists()


def test_postgres_hot_path_faults_answer_503_then_it_serves_again(
        tmp_path_factory) -> None:
    """PostgreSQL: a scan whose audit head another transaction holds locked past the
    store timeout answers 503 STORE_UNAVAILABLE in bounded time; each of the hot path's
    async connections killed on the server's side while idle (a restart, a failover) is
    noticed and replaced: the next scans are served on a new connection. Each fault is
    logged with its kind and SQLSTATE."""
    from sqlalchemy import text

    from services.healthcard.verify import Seen
    from tests.stack import backend_env, drop_schemas

    backend_env("postgres")  # skips where no PostgreSQL is configured
    settings = make_test_settings(tmp_path_factory.mktemp("pgdown"), "postgres",
                                  sync_interval_s=0, store_timeout_s=TIMEOUT_S)
    live = start_stack(settings)
    store_log = Kept()
    logging.getLogger("ehc.errors").addHandler(store_log)
    try:
        world = seeded_world(live, residents=2)
        person = world.residents.pop()
        card_id = world.app.apply("01", person.id_number, person.name)["card_id"]
        world.term_a.verify(world.app.qrcode(card_id)["qr_text"])
        system = live.app.state.systems["healthcard"]
        with system.engine.connect() as holder:  # the day's audit heads, locked
            holder.execute(text("SELECT seq FROM audit_heads FOR UPDATE")).all()
            code = world.app.qrcode(card_id)["qr_text"]
            started = time.monotonic()
            with pytest.raises(SdkError) as info:
                world.term_a.verify(code)
            assert (info.value.status, info.value.code) == (503, "STORE_UNAVAILABLE")
            assert time.monotonic() - started < TIMEOUT_S * 3 + 1
            holder.rollback()
        # the operator is told what PostgreSQL said (lock not available), no more
        faults = [r.getMessage() for r in store_log.records]
        assert any("SQLSTATE 55P03" in m for m in faults), faults
        assert not any(card_id in m or person.name in m for m in faults)
        world.term_a.verify(world.app.qrcode(card_id)["qr_text"])
        verifier = system.verifier
        # each of its connections: a lone scan's (one statement, autocommit), the
        # batches' (nothing seen: the scan goes in a transaction) and the sweeps' (a pass
        # due: it runs beside the scans; on the dead connection it fails, is logged, and
        # the next pass connects again)
        for pg, route in ((verifier.pg_one, "lone"), (verifier.pg, "batch"),
                          (verifier.pg_sweeper, "sweep")):
            killed = pg._conn.get_server_pid()
            with system.engine.connect() as conn:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
            deadline = time.monotonic() + 5
            while not pg._conn.is_closed() and time.monotonic() < deadline:
                time.sleep(0.01)
            for _ in range(2):
                if route == "batch":
                    verifier._seen = Seen()
                if route == "sweep":
                    verifier.sweep.next_pass = 0.0
                answer = world.term_a.verify(world.app.qrcode(card_id)["qr_text"])
                assert answer["card_id"] == card_id
                deadline = time.monotonic() + 5
                while not verifier._sweeping.done() and time.monotonic() < deadline:
                    time.sleep(0.01)
            assert pg._conn.get_server_pid() != killed
    finally:
        logging.getLogger("ehc.errors").removeHandler(store_log)
        live.stop()
        drop_schemas(settings)


def test_redis_down_is_a_store_fault_that_readiness_names(tmp_path) -> None:
    """With Redis as the shared store and nothing listening there: readiness answers 503
    naming Redis, a signed request answers 503 STORE_UNAVAILABLE (its nonce cannot be
    claimed; it was a 500), and liveness answers at once."""
    settings = make_test_settings(tmp_path, redis_url="redis://127.0.0.1:1/0",
                                  sync_interval_s=0)
    live = start_stack(settings)
    try:
        assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200
        ready = httpx.get(f"{live.url}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["code"] == "STORE_UNAVAILABLE"
        assert "redis: ConnectionError" in ready.json()["message"]
        from services.sdk import AdminClient, ChannelClient

        with AdminClient(live.url, live.admin_token) as admin:
            app = admin.add_channel_app("redis down")
        with ChannelClient(live.url, app["app_key"], app["app_secret"]) as client, \
                pytest.raises(SdkError) as refused:
            client.lookup("01", "330106199001011234")
        assert (refused.value.status, refused.value.code) == (503, "STORE_UNAVAILABLE")
    finally:
        live.stop()
