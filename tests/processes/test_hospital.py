"""The hospital's outpatient service over real HTTP, on SQLite and PostgreSQL: slots net
of the walk-in share, one live booking per card and session, cancelling and moving before
the slot, parallel bookings that never overfill a slot, check-in (holders at their time,
late arrivals as walk-ins, revisits), the calling board by the twin's calling rule,
no-shows, places and waits, and reports read back by their card only. The service's
clock is set by the test (a day far from today, minutes after midnight)."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import httpx
import pytest

import services.hospital.schedule as schedule_module
from services.rules.calling import after_call, next_to_call

DAY = date(2031, 3, 4)


def card() -> str:
    return secrets.token_hex(32).upper()


class Clock:
    def __init__(self) -> None:
        self.minute = 7 * 60

    def set(self, text: str) -> None:
        h, m = text.split(":")
        self.minute = int(h) * 60 + int(m)

    def __call__(self) -> tuple[date, int]:
        return DAY, self.minute


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(schedule_module, "now_cst", c)
    return c


@pytest.fixture
def hospital(stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url + "/hospital/v1", timeout=30,
                        headers={"authorization": f"Bearer {stack.admin_token}"})


def session(hospital: httpx.Client, start: str = "08:00", end: str = "10:00",
            per_slot: int = 4, walk_in_share: float = 0.5, day: date = DAY) -> int:
    dept, doctor = f"{secrets.randbelow(10**4):04d}", secrets.token_hex(6)
    assert hospital.post("/admin/departments", json={"code": dept, "name": "内科"}
                         ).status_code in (201, 409)
    assert hospital.post("/admin/doctors", json={"doctor_id": doctor, "dept_code": dept,
                                                 "name": "李医生"}).status_code == 201
    r = hospital.post("/admin/sessions", json={
        "doctor_id": doctor, "day": day.isoformat(), "start": start, "end": end,
        "slot_minutes": 15, "per_slot": per_slot, "walk_in_share": walk_in_share,
        "holders_per_walk_in": 2})
    assert r.status_code == 201, r.text
    return r.json()["session_id"]


def code(r: httpx.Response) -> str:
    return r.json()["code"]


def test_bookings_hold_to_the_slot_and_the_card(hospital, clock) -> None:
    sid = session(hospital)
    a, b, c = card(), card(), card()
    slots = {s["slot"]: s for s in hospital.get(f"/sessions/{sid}/slots").json()}
    assert len(slots) == 8 and slots["08:00"]["bookable"] == 2  # 4 a slot, half walk-ins
    one = hospital.post("/bookings", json={"session_id": sid, "slot": "08:00", "card_id": a})
    assert one.status_code == 201 and one.json()["state"] == "booked"
    assert code(hospital.post("/bookings", json={"session_id": sid, "slot": "08:30",
                                                 "card_id": a})) == "ALREADY_BOOKED"
    hospital.post("/bookings", json={"session_id": sid, "slot": "08:00", "card_id": b})
    assert code(hospital.post("/bookings", json={"session_id": sid, "slot": "08:00",
                                                 "card_id": c})) == "SLOT_FULL"
    bid = one.json()["booking_id"]
    assert code(hospital.post(f"/bookings/{bid}/cancel", json={"card_id": c})) == \
        "BOOKING_NOT_FOUND"  # another card's booking is no booking of this card
    moved = hospital.post(f"/bookings/{bid}/reschedule", json={"card_id": a, "slot": "08:15"})
    assert moved.status_code == 201 and moved.json()["slot"] == "08:15"
    slots = {s["slot"]: s for s in hospital.get(f"/sessions/{sid}/slots").json()}
    assert (slots["08:00"]["booked"], slots["08:15"]["booked"]) == (1, 1)
    clock.set("08:20")
    assert code(hospital.post("/bookings", json={"session_id": sid, "slot": "08:15",
                                                 "card_id": c})) == "SLOT_PASSED"
    assert code(hospital.post(f"/bookings/{moved.json()['booking_id']}/cancel",
                              json={"card_id": a})) == "SLOT_PASSED"
    assert code(hospital.post("/bookings", json={"session_id": sid, "slot": "08:07",
                                                 "card_id": c})) == "INVALID_REQUEST"
    assert code(hospital.post("/bookings", json={"session_id": 10**9, "slot": "09:00",
                                                 "card_id": c})) == "SESSION_NOT_FOUND"
    assert [b["state"] for b in hospital.get("/bookings", params={"card_id": a}).json()] \
        == ["cancelled", "booked"]


def test_parallel_bookings_never_overfill_a_slot(hospital, clock) -> None:
    sid = session(hospital, per_slot=5, walk_in_share=0.4)  # 3 may book a slot
    cards = [card() for _ in range(12)]

    def book(c: str) -> int:
        with httpx.Client(base_url=str(hospital.base_url), headers=hospital.headers,
                          timeout=30) as h:
            return h.post("/bookings", json={"session_id": sid, "slot": "09:00",
                                             "card_id": c}).status_code

    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(book, cards))
    assert sorted(codes) == [201] * 3 + [409] * 9
    slot = next(s for s in hospital.get(f"/sessions/{sid}/slots").json()
                if s["slot"] == "09:00")
    assert slot["booked"] == 3 and slot["free"] == 0


def test_the_board_calls_by_the_calling_rule(hospital, clock) -> None:
    sid = session(hospital)
    a, b, late, gone = card(), card(), card(), card()
    walk = [card() for _ in range(3)]
    for c, slot in ((a, "08:00"), (b, "08:15"), (late, "08:30"), (gone, "08:30")):
        assert hospital.post("/bookings", json={"session_id": sid, "slot": slot,
                                                "card_id": c}).status_code == 201
    clock.set("07:50")
    for c in (a, b, *walk):
        r = hospital.post(f"/sessions/{sid}/check-ins", json={"card_id": c})
        assert r.status_code == 201, r.text
    assert code(hospital.post(f"/sessions/{sid}/check-ins", json={"card_id": a})) == \
        "ALREADY_WAITING"
    kinds = {c: hospital.get(f"/sessions/{sid}/queue", params={"card_id": c}).json()
             for c in (a, *walk)}
    assert kinds[walk[0]]["position"] == 1  # the holders wait for their time
    assert kinds[a]["expected_wait_min"] >= 10  # 08:00 is ten minutes away

    def called() -> str | None:
        r = hospital.post(f"/sessions/{sid}/call")
        return None if r.status_code == 204 else r.json()["card_id"]

    assert called() == walk[0]  # 07:50: no holder is due yet
    clock.set("08:16")
    order = [called() for _ in range(4)]
    # the pure rule, replayed: after a walk-in, two holders (A, B) then a walk-in
    waiting, in_a_row, expect = [0, 2, 2], 0, []
    queues = {1: [a, b], 2: walk[1:]}
    while any(waiting):
        kind = next_to_call((waiting[0], waiting[1], waiting[2]), in_a_row, 2)
        assert kind is not None
        expect.append(queues[kind].pop(0))
        waiting[kind] -= 1
        in_a_row = after_call(kind, in_a_row)
    assert order == expect == [a, b, walk[1], walk[2]]
    assert called() is None and hospital.post(f"/sessions/{sid}/call").status_code == 204
    clock.set("08:45")  # 15 min after its slot: late beyond the grace
    r = hospital.post(f"/sessions/{sid}/check-ins", json={"card_id": late})
    assert r.json()["kind"] == "walk-in"
    back = hospital.post(f"/sessions/{sid}/check-ins", json={"card_id": a, "revisit": True})
    assert back.json()["kind"] == "revisit" and back.json()["position"] == 1
    assert code(hospital.post(f"/sessions/{sid}/check-ins",
                              json={"card_id": card(), "revisit": True})) == "NOT_SEEN_YET"
    clock.set("09:00")  # the 08:30 slot has ended and its grace passed
    assert called() == a and called() == late
    states = {c: hospital.get("/bookings", params={"card_id": c}).json()[0]["state"]
              for c in (a, late, gone)}
    assert states == {a: "called", late: "called", gone: "no_show"}
    assert code(hospital.get(f"/sessions/{sid}/queue", params={"card_id": gone})) == \
        "NOT_WAITING"
    other = session(hospital, day=date(2031, 3, 5))
    assert code(hospital.post(f"/sessions/{other}/call")) == "SESSION_NOT_TODAY"


def test_a_report_is_read_by_its_card_only(stack, hospital) -> None:
    mine, theirs = card(), card()
    r = hospital.post("/reports", json={"card_id": mine, "kind": "lab", "title": "血常规",
                                        "body": "WBC 6.1 x10^9/L"})
    assert r.status_code == 201
    got = hospital.get("/reports", params={"card_id": mine}).json()
    assert [x["title"] for x in got] == ["血常规"]
    assert hospital.get("/reports", params={"card_id": theirs}).json() == []
    anonymous = httpx.get(f"{stack.url}/hospital/v1/reports", params={"card_id": mine})
    assert anonymous.status_code == 401


def test_the_phone_books_waits_and_reads_reports(stack, world, hospital, clock) -> None:
    """Through the unified entry: a logged-in resident books a slot for their own card,
    sees it, cancels it, books again, is checked in at the hospital after a real scan of
    their code, reads their place on the board, and reads their reports; another
    resident sees none of it."""
    from services.sdk import ResidentClient, SdkError

    people = [world.residents.pop(), world.residents.pop()]
    phones = []
    for p in people:
        r = ResidentClient(stack.url)
        r.log_in_reading_sms(p.id_number, p.name, p.phone, world.admin)
        phones.append(r)
    me, other = phones
    with pytest.raises(SdkError) as info:
        me.book(1, "09:00")
    assert info.value.code == "NO_EHC_CARD"
    mine = me.claim()["ehc"]["card_id"]
    other.claim()
    sid = session(hospital)
    first = me.book(sid, "08:30")
    assert first["card_id"] == mine and first["state"] == "booked"
    assert me.cancel_booking(first["booking_id"])["state"] == "cancelled"
    booked = me.book(sid, "08:45")
    assert [b["state"] for b in me.bookings()] == ["cancelled", "booked"]
    assert other.bookings() == []
    with pytest.raises(SdkError) as info:
        other.cancel_booking(booked["booking_id"])
    assert info.value.code == "BOOKING_NOT_FOUND"
    # at the hospital: the terminal verifies the code, the hospital's system checks in
    clock.set("08:40")
    scanned = world.term_a.verify(me.code()["qr_text"])
    assert scanned["card_id"] == mine
    assert hospital.post(f"/sessions/{sid}/check-ins", json={"card_id": scanned["card_id"]}
                         ).json()["kind"] == "holder"
    place = me.queue_place(sid)
    assert place["position"] == 1 and place["expected_wait_min"] >= 5  # its slot is 08:45
    with pytest.raises(SdkError) as info:
        other.queue_place(sid)
    assert info.value.code == "NOT_WAITING"
    hospital.post("/reports", json={"card_id": mine, "kind": "imaging", "title": "胸部CT",
                                    "body": "未见明显异常"})
    assert [r["title"] for r in me.reports()] == ["胸部CT"] and other.reports() == []
