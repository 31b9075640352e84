"""Settlement with the e-SSC system and the payment gateway in separate processes: the
settlement process is killed (SIGKILL) between committing the insurance part and hearing
from the gateway, the gateway is down when a visit is settled, and the settlement process
is killed at random moments under a stream of visits. After restarts, visits left open
are confirmed from the gateway's own records, no visit is paid twice or paid without its
ledger entries, and the day's reconciliation is clean."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from services import sdk
from services.common.cst import CST
from services.common.secrets_store import deployment_secret
from services.common.settings import Settings
from tests.stack import backend_env, drop_backend, free_port, kill_now

pytestmark = pytest.mark.one_cst_day  # reports "today" of what it did

ITEMS = [{"code": "drugs", "category": "A", "amount_fen": 80_000},
         {"code": "room", "category": "C", "amount_fen": 5_000}]


class Stack:
    def __init__(self, var: Path, backend: str) -> None:
        self.env = {**os.environ, "EHC_VAR_DIR": str(var), "EHC_LOG_LEVEL": "WARNING",
                    "EHC_SYNC_INTERVAL_S": "0.5", "EHC_RATE_LIMIT_TERMINAL_PER_S": "0",
                    "EHC_PAYMENT_TIMEOUT_S": "10", **backend_env(backend)}
        self.cards_port, self.pay_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.cards_port}"
        self.pay_url = f"http://127.0.0.1:{self.pay_port}"
        self.cards: subprocess.Popen | None = None
        self.pay: subprocess.Popen | None = None

    def start_cards(self) -> None:
        self.cards = sdk.spawn_server({**self.env, "EHC_SYSTEMS":
                                   "registry,healthcard,socialcard,sms,channel",
                                   "EHC_PAYMENT_URL": self.pay_url}, self.cards_port)

    def start_pay(self) -> None:
        self.pay = sdk.spawn_server({**self.env, "EHC_SYSTEMS": "payment",
                                 "EHC_SOCIALCARD_URL": self.url}, self.pay_port)

    kill = staticmethod(kill_now)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request, tmp_path_factory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("var"), request.param)
    s.start_pay()
    s.start_cards()
    yield s
    for p in (s.cards, s.pay):
        if p is not None and p.poll() is None:
            sdk.stop_server(p)
    drop_backend(s.env)


@pytest.fixture(scope="module")
def hospital(stack: Stack):
    token = deployment_secret(Settings(var_dir=Path(stack.env["EHC_VAR_DIR"])), "admin_token")
    admin = sdk.AdminClient(stack.url, token, timeout_s=60)
    pay_admin = sdk.AdminClient(stack.pay_url, token)
    people = list(sdk.generate_residents(40, seed=515))
    admin.add_residents([{"id_type": "01", "id_number": p.id_number, "name": p.name}
                         for p in people])
    admin.add_insured([sdk.insured_record(p, 5000 + i) for i, p in enumerate(people)])
    inst = "330100000515"
    admin.add_hospital(inst, "Crash hospital", "330100")
    cred = admin.add_shared_terminal(inst, "0105", 1)
    app_cred = admin.add_shared_app("crash", strong_realname=True)  # claims e-SSCs
    app = sdk.ChannelClient(stack.url, app_cred["app_key"], app_cred["app_secret"])
    term = sdk.TerminalClient(stack.url, cred["terminal_id"], cred["secret"], city_code="330100",
                          timeout_s=30)
    cards = []
    for p in people:
        card = app.apply("01", p.id_number, p.name)
        essc = app.claim_essc("01", p.id_number, p.name)
        app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])
        cards.append(card["card_id"])

    def voucher(i: int) -> str:
        code = app.qrcode(cards[i % len(cards)], kind="fused")["qr_text"]
        return term.verify(code, step=10105)["essc"]["ec_token"]

    return admin, pay_admin, term, voucher


def _today() -> str:
    return datetime.now(CST).date().isoformat()


def _wait_closed(admin: sdk.AdminClient, timeout_s: float = 20) -> dict:
    """Reconciliation once no visit is left awaiting confirmation (the background
    confirmation runs every 0.5 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        report = admin.reconcile_settlements(_today())
        if not report["open"] or time.monotonic() > deadline:
            return report
        time.sleep(0.3)


def _kill_mid_settle(stack: Stack, term: sdk.TerminalClient, sid: str) -> None:
    """Settle in a thread and kill the settlement process 1 s in (the gateway, told to
    take 2.5 s, has not answered yet)."""
    worker = threading.Thread(target=_settle_ignoring_the_crash, args=(term, sid))
    worker.start()
    time.sleep(1.0)
    stack.kill(stack.cards)
    worker.join(timeout=30)


def test_killed_between_insurance_and_payment(stack: Stack, hospital) -> None:
    admin, pay_admin, term, voucher = hospital
    pay_admin.payment_behaviour("success", delay_ms=2500)  # the gateway charges, then waits
    sid = term.upload_fees(voucher(0), ITEMS)["settlement_id"]
    _kill_mid_settle(stack, term, sid)
    pay_admin.payment_behaviour("success")
    stack.start_cards()
    report = _wait_closed(admin)
    assert report["clean"] and not report["open"], report
    assert term.settlement(sid)["state"] == "settled"  # confirmed from the gateway's record


def test_killed_before_a_refusing_gateway_answers(stack: Stack, hospital) -> None:
    """The insurance part is committed, the gateway will refuse the cash part, and the
    settlement process dies before it hears so: after the restart the sweep asks again,
    hears the refusal and returns the insurance part. Never stuck, never paid."""
    admin, pay_admin, term, voucher = hospital
    pay_admin.payment_behaviour("refuse", delay_ms=2500)
    sid = term.upload_fees(voucher(4), ITEMS)["settlement_id"]
    _kill_mid_settle(stack, term, sid)
    pay_admin.payment_behaviour("refuse")
    stack.start_cards()
    report = _wait_closed(admin)
    pay_admin.payment_behaviour("success")
    assert report["clean"] and not report["open"], report
    assert term.settlement(sid)["state"] == "payment_failed"


def test_gateway_down_when_settling(stack: Stack, hospital) -> None:
    admin, _, term, voucher = hospital
    sid = term.upload_fees(voucher(1), ITEMS)["settlement_id"]
    stack.kill(stack.pay)
    try:
        assert term.settle(sid)["state"] == "awaiting_confirmation"  # fail closed
        with pytest.raises(sdk.SdkError) as info:
            term.reverse(sid)
        assert info.value.code == "PAYMENT_UNCONFIRMED"
    finally:
        stack.start_pay()
    report = _wait_closed(admin)  # never asked: asked now, with the order ID as the key
    assert report["clean"], report
    assert term.settlement(sid)["state"] == "settled"


def test_random_kills_under_a_stream_of_visits(stack: Stack, hospital) -> None:
    admin, pay_admin, term, voucher = hospital
    rng = random.Random(5)
    pay_admin.payment_behaviour("success", delay_ms=150)
    for cycle in range(3):
        stop = threading.Event()
        worker = threading.Thread(target=_stream, args=(term, voucher, stop, cycle))
        worker.start()
        time.sleep(rng.uniform(0.8, 2.0))
        stack.kill(stack.cards)
        stop.set()
        worker.join(timeout=60)
        stack.start_cards()
    pay_admin.payment_behaviour("success")
    report = _wait_closed(admin)
    assert report["clean"], report["differences"]
    assert report["by_state"].get("settled", 0) >= 3
    statement = httpx.get(f"{stack.pay_url}/pay/v1/statements", params={"date": _today()},
                          headers={"Authorization": f"Bearer {admin.token}"}).json()
    assert len({p["order_id"] for p in statement}) == len(statement)  # one charge per visit


def _settle_ignoring_the_crash(term: sdk.TerminalClient, sid: str) -> None:
    with contextlib.suppress(sdk.SdkError, httpx.HTTPError):
        term.settle(sid)


def _stream(term: sdk.TerminalClient, voucher, stop: threading.Event, cycle: int) -> None:
    i = 100 * cycle
    while not stop.is_set():
        try:
            sid = term.upload_fees(voucher(i), ITEMS)["settlement_id"]
            term.settle(sid)
        except (sdk.SdkError, httpx.HTTPError):
            pass
        i += 1
