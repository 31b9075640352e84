"""The hospital service's drill clock, the board's recall, and a visit's fees handed to
settlement, over real HTTP on SQLite and PostgreSQL: a drill session runs on the clock its
operator sets (a live one refuses it); a named patient is called out of turn only while
waiting and due; a bill gathers the card's open fees once (asked again, the same bill, even
eight times at once), is paid once, and the payment terminal settles it through the e-SSC
exactly once, a retry after a lost answer included."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.sdk import HospitalClient, SdkError, TerminalClient, settle_bill
from tests.conftest import fused_resident

FEES = [{"code": "consultation", "category": "A", "amount_fen": 2_500},
        {"code": "drugs-b", "category": "B", "amount_fen": 4_000}]


def card() -> str:
    return secrets.token_hex(32).upper()


def refused(call, *args, **kw) -> str:
    with pytest.raises(SdkError) as info:
        call(*args, **kw)
    return info.value.code


@pytest.fixture
def hospital(stack) -> HospitalClient:
    return HospitalClient(stack.url, stack.admin_token)


def drill(hospital: HospitalClient, drill: bool = True, day: str = "2031-06-07") -> int:
    dept, doctor = f"{secrets.randbelow(10**4):04d}", secrets.token_hex(6)
    hospital.add_department(dept, "内科")
    hospital.add_doctor(doctor, dept, "赵医生")
    return hospital.add_session(doctor, day, "08:00", "10:00", per_slot=4,
                                walk_in_share=0.5, drill=drill)


def test_a_drill_runs_on_its_operators_clock(hospital) -> None:
    live = drill(hospital, drill=False)
    assert refused(hospital.set_clock, live, "08:00") == "NOT_A_DRILL"
    assert refused(hospital.set_clock, 10**9, "08:00") == "SESSION_NOT_FOUND"
    sid = drill(hospital)  # a day years away: only its own clock makes it "today"
    a, b, late = card(), card(), card()
    assert not any(s["passed"] for s in hospital.request(
        "GET", f"/hospital/v1/sessions/{sid}/slots"))  # from midnight
    hospital.book(sid, "08:00", a)
    hospital.book(sid, "08:15", late)
    assert hospital.set_clock(sid, "08:05") == {"session_id": sid, "day": "2031-06-07",
                                                "at": "08:05"}
    assert refused(hospital.book, sid, "08:00", b) == "SLOT_PASSED"
    assert hospital.check_in(sid, a)["kind"] == "holder"
    assert hospital.check_in(sid, b)["kind"] == "walk-in"
    hospital.set_clock(sid, "08:40")  # 08:15 + 15 + grace 10 is 08:40: not yet a no-show
    assert hospital.call(sid)["card_id"] == a
    hospital.set_clock(sid, "08:41")
    assert hospital.call(sid)["card_id"] == b
    assert [x["state"] for x in hospital.bookings(late)] == ["no_show"]
    hospital.set_clock(sid, "07:00")  # a drill may replay an earlier time
    slots = {s["slot"]: s["passed"] for s in hospital.request(
        "GET", f"/hospital/v1/sessions/{sid}/slots")}
    assert slots["08:00"] is False and slots["09:45"] is False
    assert refused(hospital.request, "PUT", f"/hospital/v1/admin/sessions/{sid}/clock",
                   {"at": "25:00"}) == "INVALID_REQUEST"


def test_the_board_recalls_a_named_patient_only_while_due(hospital) -> None:
    sid = drill(hospital)
    first, second, holder = card(), card(), card()
    hospital.book(sid, "09:00", holder)
    hospital.set_clock(sid, "08:10")
    for c in (first, second, holder):
        hospital.check_in(sid, c)
    assert refused(hospital.call, sid, holder) == "NOT_WAITING"  # waits, not due till 09:00
    assert refused(hospital.call, sid, card()) == "NOT_WAITING"  # not here at all
    assert hospital.call(sid, second) == {"card_id": second, "kind": "walk-in",
                                          "booking_id": None, "due": "08:10"}
    assert hospital.call(sid)["card_id"] == first  # the board goes on by its rule
    assert hospital.call(sid) is None  # the holder is not due yet
    hospital.set_clock(sid, "09:00")
    assert hospital.call(sid, holder)["kind"] == "holder"
    assert refused(hospital.call, sid, holder) == "NOT_WAITING"  # called already


def test_a_bill_gathers_the_open_fees_once_and_is_paid_once(hospital) -> None:
    mine, other = card(), card()
    assert refused(hospital.bill, mine) == "NOTHING_TO_BILL"
    assert len(hospital.charge(mine, FEES)) == 2
    with ThreadPoolExecutor(8) as pool:  # the terminal retried, or two terminals at once
        bills = list(pool.map(lambda _: HospitalClient(hospital.base_url,
                                                       hospital.token).bill(mine), range(8)))
    assert len({b["bill_id"] for b in bills}) == 1
    bill = bills[0]
    assert bill["amount_fen"] == 6_500 and bill["items"] == FEES and bill["state"] == "open"
    hospital.charge(mine, [{"code": "x-ray", "category": "A", "amount_fen": 8_000}])
    assert hospital.bill(mine) == bill  # a fee charged meanwhile waits for the next bill
    sid = "3301" + "0" * 26
    assert refused(hospital.bill_paid, bill["bill_id"], other, "essc", sid) == "BILL_NOT_FOUND"
    assert refused(hospital.bill_paid, bill["bill_id"], mine, "essc") == "INVALID_REQUEST"
    assert refused(hospital.bill_paid, bill["bill_id"], mine, "window", sid) == \
        "INVALID_REQUEST"
    paid = hospital.bill_paid(bill["bill_id"], mine, "essc", sid)
    assert (paid["state"], paid["settlement_id"]) == ("paid", sid)
    assert hospital.bill_paid(bill["bill_id"], mine, "essc", sid) == paid  # same again
    assert refused(hospital.bill_paid, bill["bill_id"], mine, "window") == "BILL_ALREADY_PAID"
    second = hospital.bill(mine)
    assert second["bill_id"] != bill["bill_id"] and second["amount_fen"] == 8_000
    hospital.bill_paid(second["bill_id"], mine, "self_pay")
    assert [b["paid_by"] for b in hospital.bills(mine)] == ["essc", "self_pay"]
    assert hospital.bills(other) == []
    assert refused(hospital.charge, mine, [{"code": "x", "category": "D",
                                            "amount_fen": 1}]) == "INVALID_REQUEST"
    assert refused(hospital.charge, mine, [{"code": "x", "category": "A",
                                            "amount_fen": 0}]) == "INVALID_REQUEST"


def test_the_payment_terminal_settles_a_bill_exactly_once(stack, world, hospital) -> None:
    """A lost answer after the upload: settling again with the same voucher replays the
    same settlement; the day's settlements hold the visit once and reconcile."""
    _, ehc, essc, voucher = fused_resident(world)
    card_id = ehc["card_id"]
    term: TerminalClient = world.term_a
    hospital.charge(card_id, FEES)
    token = voucher()
    bill = hospital.bill(card_id)
    lost = term.upload_fees(token, bill["items"], key=f"bill-{bill['bill_id']}")
    answer = settle_bill(hospital, term, card_id, token)  # the terminal tries again
    assert answer["settlement_id"] == lost["settlement_id"] and answer["state"] == "settled"
    assert answer["total_fen"] == 6_500
    (paid,) = hospital.bills(card_id)
    assert (paid["state"], paid["paid_by"], paid["settlement_id"]) == \
        ("paid", "essc", lost["settlement_id"])
    # paid: nothing is billed again
    assert refused(settle_bill, hospital, term, card_id, token) == "NOTHING_TO_BILL"
    visits = world.app.request("GET", f"/essc/v1/cards/{essc['ssc_card_no']}/settlements")
    assert [v["settlement_id"] for v in visits] == [lost["settlement_id"]]
