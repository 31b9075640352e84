"""The two card systems in separate processes (as in production), over real HTTP: a
resident claims and binds through the channel entry and a terminal gets both identities;
the e-SSC process is killed (SIGKILL) in the middle of bulk binding and reconciliation
leaves both sides equal; a fused verification during the outage answers the EHC identity
marked partial; usage records made while either side was down reach it once it is back."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services import sdk
from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from tests.stack import backend_env, drop_backend, free_port, kill_now


@dataclass
class TwoProcesses:
    """The e-SSC system (with the registry) in one process; the EHC system and the
    channel entry in another; each reaches the other only by URL."""

    env: dict[str, str]
    social_port: int
    ehc_port: int
    social: subprocess.Popen | None = None
    ehc: subprocess.Popen | None = None

    @property
    def social_url(self) -> str:
        return f"http://127.0.0.1:{self.social_port}"

    @property
    def ehc_url(self) -> str:
        return f"http://127.0.0.1:{self.ehc_port}"

    def start_social(self) -> None:
        self.social = sdk.spawn_server({**self.env, "EHC_SYSTEMS": "registry,socialcard",
                                    "EHC_HEALTHCARD_URL": self.ehc_url}, self.social_port)

    def start_ehc(self) -> None:
        self.ehc = sdk.spawn_server({**self.env, "EHC_SYSTEMS": "healthcard,sms,channel",
                                 "EHC_SOCIALCARD_URL": self.social_url,
                                 "EHC_REGISTRY_URL": self.social_url}, self.ehc_port)

    kill = staticmethod(kill_now)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def two(request, tmp_path_factory) -> Iterator[TwoProcesses]:
    var = tmp_path_factory.mktemp("var")
    env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
           "EHC_SYNC_INTERVAL_S": "0.5", "EHC_RATE_LIMIT_TERMINAL_PER_S": "0",
           **backend_env(request.param)}
    procs = TwoProcesses(env, free_port(), free_port())
    procs.start_social()
    procs.start_ehc()
    yield procs
    for p in (procs.ehc, procs.social):
        if p is not None:
            sdk.stop_server(p)
    drop_backend(env)


@dataclass
class Setup:
    social: sdk.AdminClient
    ehc: sdk.AdminClient
    app: sdk.ChannelClient
    app_social: sdk.ChannelClient  # the same app's credentials, at the e-SSC process
    term: sdk.TerminalClient
    term_social: sdk.TerminalClient
    people: list


@pytest.fixture(scope="module")
def setup(two: TwoProcesses) -> Setup:
    token = deployment_secret(Settings(var_dir=Path(two.env["EHC_VAR_DIR"])), "admin_token")
    social = sdk.AdminClient(two.social_url, token, timeout_s=120)
    ehc = sdk.AdminClient(two.ehc_url, token, timeout_s=120)
    people = list(sdk.generate_residents(60, seed=77))
    social.add_residents([{"id_type": "01", "id_number": p.id_number, "name": p.name,
                           "phone": p.phone} for p in people])
    social.add_insured([sdk.insured_record(p, 500 + i) for i, p in enumerate(people)])
    ehc.add_institution("330100000042", "Two-process hospital", "330100")
    social.add_institution("330100000042", "Two-process hospital", "330100", system="essc")
    cred = ehc.add_terminal("330100000042", "0101", 1)
    social.add_terminal("330100000042", "0101", 1, system="essc", secret=cred["secret"])
    app_cred = ehc.add_channel_app("two-process app", strong_realname=True)  # the entry's role
    social.add_channel_app("two-process app", system="essc", app_key=app_cred["app_key"],
                           strong_realname=True,
                           app_secret=app_cred["app_secret"])
    return Setup(social, ehc,
                 sdk.ChannelClient(two.ehc_url, app_cred["app_key"], app_cred["app_secret"]),
                 sdk.ChannelClient(two.social_url, app_cred["app_key"], app_cred["app_secret"]),
                 sdk.TerminalClient(two.ehc_url, cred["terminal_id"], cred["secret"],
                                city_code="330100"),
                 sdk.TerminalClient(two.social_url, cred["terminal_id"], cred["secret"],
                                city_code="330100"), people)


def _bindings(admin: sdk.AdminClient, system: str) -> dict[str, dict]:
    out, after = {}, ""
    while True:
        page = admin.request("GET", f"/{system}/v1/peer/bindings",
                             params={"after": after, "limit": 1000})
        out.update({r["binding_id"]: r for r in page})
        if len(page) < 1000:
            return out
        after = page[-1]["binding_id"]


def test_claim_bind_and_verify_through_the_channel_entry(two, setup) -> None:
    person = setup.people[0]
    with sdk.ResidentClient(two.ehc_url) as resident:
        token = resident.log_in_reading_sms(person.id_number, person.name, person.phone,
                                            setup.ehc)
    with httpx.Client(base_url=two.ehc_url, timeout=10) as http:
        auth = {"Authorization": f"Bearer {token}"}
        claimed = http.post("/channel/v1/claim", headers=auth).json()
        assert claimed["ehc"]["card_id"] and claimed["essc"]["ssc_card_no"]
        bound = http.post("/channel/v1/binding", headers=auth).json()
        assert bound["state"] == "bound" and bound["status"] == "complete"
        code = http.get("/channel/v1/code", headers=auth).json()
        assert code["kind"] == "fused" and code["svg"].startswith("<svg")
        wrong = http.post("/channel/v1/login/code", json={
            "id_type": "01", "id_number": person.id_number, "name": person.name + "X"})
        assert wrong.status_code == 202  # the same answer: nothing is sent, nothing told
        assert http.post("/channel/v1/login", json={
            "challenge_id": wrong.json()["challenge_id"],
            "code": setup.ehc.login_code(person.phone)}).json()["code"] == "LOGIN_REFUSED"
    answer = setup.term.verify(code["qr_text"])
    assert answer["card_id"] == claimed["ehc"]["card_id"] and answer["partial"] is False
    assert answer["essc"]["ssc_card_no"] == claimed["essc"]["ssc_card_no"]
    # both processes hold the binding, each with both signatures
    bid = bound["binding_id"]
    for holder in (setup.ehc, setup.social):
        system = "ehc" if holder is setup.ehc else "essc"
        proof = holder.binding_proof(bid, system=system)
        assert proof["ehc"] and proof["essc"]
        other = "essc" if system == "ehc" else "ehc"
        peer = setup.social if other == "essc" else setup.ehc
        assert peer.check_binding_proof(proof, system=other)["matches_ours"]


@pytest.mark.parametrize("victim", ["socialcard", "healthcard"])
def test_kill_a_side_mid_binding_then_reconcile(two, setup, victim: str) -> None:
    """The e-SSC side's peer routes are slowed by 2 s, so the countersigning call of a
    bulk page takes about 2 s: a kill 0.2 to 1.2 s after the EHC side stored the page's
    bindings as pending (read from its store, whatever the machine's load) lands inside
    the binding.
    Killing the e-SSC side leaves the EHC side's bindings pending and the
    e-SSC side without them; killing the EHC side (the coordinator) leaves them pending
    there while the e-SSC side commits them. Reconciliation must end both equal."""
    rng = random.Random(11 if victim == "socialcard" else 12)
    for cycle in range(2):
        people = list(sdk.generate_residents(800, seed=1000 + cycle + (10 if victim[0] == "h"
                                                                    else 0)))
        serial = (20_000 if victim[0] == "h" else 10_000) + 1000 * cycle
        setup.social.add_residents([{"id_type": "01", "id_number": p.id_number,
                                     "name": p.name} for p in people])  # real-name source
        setup.social.add_insured([sdk.insured_record(p, serial + i) for i, p in enumerate(people)])
        setup.social.set_faults(delay_ms=2000)
        worker = threading.Thread(target=_fuse_ignoring_the_outage, args=(setup.ehc,))
        worker.start()
        _wait_for_pending(two.env)  # the page is signed and sent: the countersigning runs
        time.sleep(rng.uniform(0.2, 1.2))
        if victim == "socialcard":
            two.kill(two.social)
            worker.join(timeout=60)
            two.start_social()
        else:
            two.kill(two.ehc)
            worker.join(timeout=60)
            time.sleep(2.5)  # the e-SSC side finishes the call nobody waits for
            setup.social.set_faults()
            two.start_ehc()
        setup.social.set_faults()
        report = setup.ehc.reconcile_bindings()
        assert report["completed"] >= 1, report  # the kill did land mid-binding
        assert report["still_pending"] == 0 and not report["conflicts"], report
        ehc_side, essc_side = _bindings(setup.ehc, "ehc"), _bindings(setup.social, "essc")
        assert ehc_side == essc_side, f"cycle {cycle}: sides differ after reconcile"
        assert setup.ehc.reconcile_bindings()["clean"]
        # and the bulk job carries on where it stopped
        while setup.ehc.fuse_page("", limit=2000)["bound"]:
            pass
        assert _bindings(setup.ehc, "ehc") == _bindings(setup.social, "essc")


def _wait_for_pending(env: dict[str, str], timeout_s: float = 30.0) -> None:
    """Until the EHC side's store holds bindings sent and not yet countersigned."""
    import sqlalchemy as sa

    from services.common.db import schema_name, system_url

    settings = Settings(var_dir=Path(env["EHC_VAR_DIR"]), database_url=env.get(
        "EHC_DATABASE_URL"), db_schema_prefix=env.get("EHC_DB_SCHEMA_PREFIX", ""))
    table = "binding_pending" if settings.database_url is None else \
        f'"{schema_name(settings, "healthcard")}".binding_pending'
    engine = sa.create_engine(system_url(settings, "healthcard"))
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar():
                    return
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError("the bulk page never reached the countersigning")


def _fuse_ignoring_the_outage(admin: sdk.AdminClient) -> None:
    """One bulk page; the e-SSC process dies during it, so it may fail."""
    with contextlib.suppress(sdk.SdkError, httpx.HTTPError):
        admin.fuse_page("", limit=2000)


def test_outage_fail_soft_and_records_after_comeback(two, setup) -> None:
    person = setup.people[1]
    card = setup.app.apply("01", person.id_number, person.name)
    essc = setup.app_social.claim_essc("01", person.id_number, person.name)
    setup.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
    codes = [setup.app.qrcode(card["card_id"], kind="fused")["qr_text"] for _ in range(3)]
    two.kill(two.social)
    try:
        for step, code in zip((10101, 10102, 10103), codes, strict=True):
            t0 = time.perf_counter()
            answer = setup.term.verify(code, step=step)
            assert time.perf_counter() - t0 < 2.0
            assert answer["partial"] is True and answer["partial_reason"] == (
                "SOCIALCARD_UNAVAILABLE")
            assert answer["card_id"] == card["card_id"] and answer["name"] == person.name
    finally:
        two.start_social()
    # the e-SSC side catches up by its cursor (background pull every 0.5 s)
    deadline = time.monotonic() + 20
    while True:
        shared = [r for r in setup.app_social.usage_history(essc["ssc_card_no"], "essc")
                  if r["source"] == "ehc"]
        if len(shared) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert sorted(r["step"] for r in shared) == [10101, 10102, 10103]
    assert len({r["source_id"] for r in shared}) == 3
    # and the other way: an e-SSC scan while the EHC process is down
    two.kill(two.ehc)
    try:
        code = setup.app_social.essc_qrcode(essc["ssc_card_no"])["qr_text"]
        setup.term_social.verify_essc(code)
    finally:
        two.start_ehc()
    deadline = time.monotonic() + 20
    while True:
        back = [r for r in setup.app.usage_history(card["card_id"]) if r["source"] == "essc"]
        if back or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert len(back) == 1
    time.sleep(1.5)  # more pulls bring nothing twice
    assert len([r for r in setup.app.usage_history(card["card_id"])
                if r["source"] == "essc"]) == 1



def test_a_pull_of_shared_state_is_made_by_one_process_a_turn(tmp_path: Path) -> None:
    """Every worker and server runs the same timers; a pull of shared state (the peer's
    usage records, the deaths, the settlements awaiting confirmation) is made by one of
    them per interval, the first to claim the turn in the shared store (here two
    processes' stores on one SQLite file); a process alone makes every turn."""
    import asyncio

    from sqlalchemy import MetaData, create_engine

    from services.app import once_per_interval
    from services.common.shared_store import DatabaseStore, shared_events_table

    metadata = MetaData()
    table = shared_events_table(metadata)
    engines = [create_engine(f"sqlite:///{tmp_path / 'shared.db'}") for _ in range(2)]
    metadata.create_all(engines[0])
    made = [0, 0]

    def job(i: int):
        async def pull() -> None:
            made[i] += 1
        return pull

    interval = 1.0
    turns = [once_per_interval(DatabaseStore(e, table), "usage", interval, job(i))
             for i, e in enumerate(engines)]
    for turn in range(3):
        if interval - time.time() % interval < 0.2:  # too near the next turn
            time.sleep(interval - time.time() % interval)
        for run in turns:
            asyncio.run(run())
        assert sum(made) == turn + 1, made
        time.sleep(interval - time.time() % interval)
    made = [0, 0]
    alone = once_per_interval(DatabaseStore(engines[0], table), "deaths", interval, job(0))
    for _ in range(2):
        asyncio.run(alone())
        time.sleep(interval - time.time() % interval)
    assert made == [2, 0]
    for engine in engines:
        engine.dispose()


def test_the_periodic_jobs_read_and_write_no_store_on_the_event_loop(tmp_path: Path) -> None:
    """What the servers run every ``EHC_SYNC_INTERVAL_S`` (the usage and deaths pulls,
    the seals, the settlements' confirmation round) and the payment notifier's poll
    take no store connection on the event loop's thread: a slow store would stall
    every request of the process. Each store's pool tells which thread checks out."""
    import asyncio

    from sqlalchemy import event

    from services.app import build_app, close_app, seal_recent
    from services.payment.peers import notify_forever
    from tests.stack import make_test_settings

    app = build_app(make_test_settings(tmp_path))
    systems = app.state.systems
    on_loop: list[str] = []
    for name, system in systems.items():
        engine = getattr(system, "engine", None)
        if engine is not None:
            event.listen(engine, "checkout", lambda *_, name=name: on_loop.append(name)
                         if threading.current_thread() is threading.main_thread() else None)

    async def one_round() -> list[object]:
        ehc, essc = systems["healthcard"], systems["socialcard"]
        done = [await ehc.fusion.pull_usage(), await essc.fusion.pull_usage(),
                await ehc.pull_deaths(), await essc.pull_deaths(),
                await essc.settlements.confirm_open(10.0)]
        for side in (ehc, essc):
            await seal_recent(side)
        notifier = asyncio.create_task(notify_forever(systems["payment"], None, 0.01))
        await asyncio.sleep(0.2)
        notifier.cancel()
        return done

    try:
        done = asyncio.run(one_round())
    finally:
        close_app(app)
    assert done == [0, 0, 0, 0, 0]  # nothing to pull or confirm yet
    assert on_loop == []
