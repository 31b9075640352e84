from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dt_time

import pytest

from services.sdk import (
    CST,
    AdminClient,
    ChannelClient,
    TerminalClient,
    generate_residents,
    insured_record,
)
from tests.stack import PG_ENV, LiveStack, drop_schemas, make_test_settings, start_stack

_inst_counter = itertools.count(1)
# the longest a test marked `one_cst_day` takes with its set-up (the slowest, a co-simulated
# day, about 50 s on this 2-core host), with margin
ONE_DAY_TEST_S = 120


def backend_settings(request, tmp_path_factory, **overrides):
    """Settings of the database backend a parametrised fixture asks for."""
    if request.param == "postgres" and not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql+psycopg://postgres@"
                    "127.0.0.1:5432/test)")
    return make_test_settings(tmp_path_factory.mktemp("var"), request.param, **overrides)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request, tmp_path_factory) -> Iterator[LiveStack]:
    settings = backend_settings(request, tmp_path_factory)
    live = start_stack(settings)
    yield live
    live.stop()
    drop_schemas(settings)


@dataclass
class World:
    """A seeded corner of the province: residents, one app, two institutions' terminals."""

    admin: AdminClient
    app: ChannelClient
    term_a: TerminalClient
    term_b: TerminalClient
    residents: list


def seeded_world(stack: LiveStack, residents: int = 40) -> World:
    """Residents in the registry (all insured, with an issued e-SSC), two institutions
    with a terminal each and one app, registered alike with both card systems."""
    admin = AdminClient(stack.url, stack.admin_token)
    people = list(generate_residents(residents, seed=7))
    admin.add_residents([{"id_type": "01", "id_number": p.id_number, "name": p.name,
                          "phone": p.phone} for p in people])
    base = next(_inst_counter) * 1000
    admin.add_insured([insured_record(p, base + i) for i, p in enumerate(people)])
    terms = []
    for reads_physical_cards in (False, True):  # term_b also reads physical cards
        code = f"3301{next(_inst_counter):08d}"
        admin.add_hospital(code, f"Hospital {code}", "330100")
        cred = admin.add_shared_terminal(code, "0101", 2, reads_physical_cards)
        terms.append(TerminalClient(stack.url, cred["terminal_id"], cred["secret"],
                                    city_code="330100", terminal_type=2))
    app_cred = admin.add_shared_app("浙里办 test", strong_realname=True)  # logs in by SMS
    app = ChannelClient(stack.url, app_cred["app_key"], app_cred["app_secret"])
    return World(admin, app, terms[0], terms[1], people)


def fused_resident(world: World):
    """A resident with an EHC card and their e-SSC card bound to it: (person, card, e-SSC
    card, voucher), where ``voucher()`` scans a fresh fused code at the payment step and
    returns its voucher token (ecToken)."""
    person = world.residents.pop()
    card = world.app.apply("01", person.id_number, person.name)
    essc = world.app.claim_essc("01", person.id_number, person.name)
    world.app.bind(card["card_id"], essc["ssc_card_no"], essc["region"])

    def voucher() -> str:
        # a fused scan answers partially (no voucher) when the e-SSC side is slower than
        # EHC_PEER_TIMEOUT_S, as on a loaded machine: that fail-soft is tested on its own;
        # here a voucher is what is needed, so scan a fresh code again
        for _ in range(5):
            code = world.app.qrcode(card["card_id"], kind="fused")["qr_text"]
            answer = world.term_a.verify(code, step=10105)
            if not answer["partial"]:
                return answer["essc"]["ec_token"]
        raise AssertionError(f"the e-SSC side answered no fused scan: {answer}")

    return person, card, essc, voucher


@pytest.fixture(scope="module")
def world(stack: LiveStack) -> Iterator[World]:
    w = seeded_world(stack)
    yield w
    for c in (w.admin, w.app, w.term_a, w.term_b):
        c.close()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``serial`` refuses to run on a pytest-xdist worker: a load figure
    taken beside other tests is not the server's, and schemathesis makes no cases there
    (its test would pass having checked nothing)."""
    if item.get_closest_marker("serial") and os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.fail("this test runs alone: `pytest -m serial` (make test runs it after "
                    "the parallel part)", pytrace=False)
    if item.get_closest_marker("one_cst_day"):
        wait_past_cst_midnight(ONE_DAY_TEST_S)


def wait_past_cst_midnight(within_s: float) -> None:
    """A test that reads a China Standard Time day's report ("today") of what it just did
    must not straddle midnight CST (16:00 UTC), where "today" changes under it: started
    less than ``within_s`` before midnight, it waits until just after."""
    now = datetime.now(CST)
    left = (datetime.combine(now.date() + timedelta(days=1), dt_time(), tzinfo=CST)
            - now).total_seconds()
    if left < within_s:
        print(f"waiting {left:.0f} s for midnight CST: this test reads one day's report",
              file=sys.stderr)
        time.sleep(left + 2)
