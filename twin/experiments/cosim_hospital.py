"""The co-simulated day's hospital outpatient service: the model's online patients book,
check in, are called, get their results and their bills through the real service.

Each doctor's queue of the model is a drill session of the service (one per department
with a shared queue, one per named doctor), with the model's appointment grid (slots of
``online.slot_length`` from the opening of arrivals, a hundred places each, none kept for
walk-ins: the model decides who books). The drill's clock is set to the model's time
before each call, so the service's rules (holder or walk-in, lateness, no-shows, the
board) read the simulated day, not the wall clock. Before the day, every online patient
books their slot (no-shows too), as a day ahead on the phone. During it: the code scan
at the department checks them in; the model's doctor calls them by name (the board's
recall: the model's queue also holds the walk-ins registered at windows, whom the board
does not see, so its own order is reported, not imposed); a revisit checks in again;
results are published and read back by the card; and each phone payment charges the
visit's orders, bills them and settles the bill (``services.sdk.settle_bill``).

``check`` reads the service's own records back (its export pages) and compares them one
to one with what the model did."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from services.sdk import (
    HospitalClient,
    SdkError,
    TerminalClient,
    cst_today_text,
    settle_bill,
)
from twin.model.day import HospitalDay

LAST_MINUTE = 23 * 60 + 59
# the service's export pages hold back rows younger than 2 s (an open transaction could
# still commit behind the cursor): the check reads them once the day's last are older
EXPORT_HOLD_S = 2.5
# the orders charged to a visit when the patient is sent to pay: 0 tests, 1 drugs
ORDERS = ({"code": "tests", "category": "A", "amount_fen": 9_000},
          {"code": "drugs", "category": "A", "amount_fen": 9_000},
          {"code": "drugs-class-b", "category": "B", "amount_fen": 4_000})
CONSULTATION = {"code": "consultation", "category": "A", "amount_fen": 2_500}


def _clock(minute: float) -> str:
    m = min(max(int(minute), 0), LAST_MINUTE)
    return f"{m // 60:02d}:{m % 60:02d}"


@dataclass
class FloorLog:
    """What the model did at the hospital's service (each a 2xx answer)."""

    booked: int = 0
    unbooked: int = 0  # slot past the session's last (deferred to the next day)
    checked_in: int = 0
    revisits: int = 0
    calls: int = 0
    board_first: int = 0  # the board's own next patient was the model's
    reports: int = 0
    reports_read: int = 0
    bills: Counter = field(default_factory=Counter)  # paid_by -> bills
    refusals: Counter = field(default_factory=Counter)


class HospitalFloor:
    def __init__(self, url: str, admin_token: str) -> None:
        self.hospital = HospitalClient(url, admin_token, timeout_s=60)
        self.sessions: dict[str, int] = {}  # doctor queue (station name) -> session
        self.session_of: dict[int, int] = {}  # pid -> session
        self.booked: set[int] = set()
        self.on_board: set[int] = set()
        self.charged: set[int] = set()  # the consultation is charged once a visit
        self.clocks: dict[int, str] = {}
        self.log = FloorLog()

    # ------------------------------------------------------------------ before the day
    def open(self, day: HospitalDay, cards: dict[int, str]) -> None:
        """The day's drill sessions, and every online patient's booking."""
        h, sc = self.hospital, day.sc
        slot = max(5, round(sc.online.slot_length))
        start = int(sc.day.arrivals_from)
        end = start + (LAST_MINUTE - start) // slot * slot
        today = cst_today_text()
        tag = secrets.token_hex(3)
        for d, queues in enumerate(day.doctor_queues):
            dept = f"9{d % 1000:03d}"
            h.add_department(dept, sc.hospital.departments[d].name[:64])
            for k, st in enumerate(queues):
                doctor = f"cs{tag}d{d}k{k}"[:16]
                h.add_doctor(doctor, dept, st.name[:64])
                self.sessions[st.name] = h.add_session(
                    doctor, today, _clock(start), _clock(end), slot_minutes=slot,
                    per_slot=100, walk_in_share=0.0,
                    holders_per_walk_in=min(sc.online.holders_per_walk_in, 20), drill=True)
        for sid in self.sessions.values():
            self._at(sid, 0)
        for pid, card in cards.items():
            sid = self.sessions[day._doctor_of(pid).name]
            self.session_of[pid] = sid
            t = float(day.booked[pid])
            m = start + int((t - start) // slot) * slot
            if t < start or m >= end:
                self.log.unbooked += 1
                continue
            if self._try(h.book, sid, _clock(m), card) is not None:
                self.booked.add(pid)
                self.log.booked += 1

    # ------------------------------------------------------------------ during the day
    def _at(self, sid: int, minute: float) -> None:
        at = _clock(minute)
        if self.clocks.get(sid) != at:
            self.hospital.set_clock(sid, at)
            self.clocks[sid] = at

    def _try(self, call, *args: Any) -> Any:
        try:
            return call(*args) or {}
        except (SdkError, httpx.HTTPError) as exc:
            self.log.refusals[getattr(exc, "code", type(exc).__name__)] += 1
            return None

    def checked_in(self, pid: int, card: str, now: float) -> None:
        sid = self.session_of[pid]
        self._at(sid, now)
        if self._try(self.hospital.check_in, sid, card) is not None:
            self.on_board.add(pid)
            self.log.checked_in += 1

    def seen(self, pid: int, card: str, joined: float, called: float, revisit: bool) -> None:
        if pid not in self.on_board:  # checked in at a window: not on the board
            return
        sid = self.session_of[pid]
        if revisit:
            self._at(sid, joined)
            if self._try(self.hospital.check_in, sid, card, True) is None:
                return
            self.log.revisits += 1
        self._at(sid, called)
        place = self._try(self.hospital.queue_place, sid, card)
        if place is not None and place.get("position") == 1:
            self.log.board_first += 1
        if self._try(self.hospital.call, sid, card) is not None:
            self.log.calls += 1

    def results(self, card: str, step: str) -> None:
        title = "blood count" if step == "lab" else "chest X-ray"
        if self._try(self.hospital.publish_report, card, step, title, "normal") is not None:
            self.log.reports += 1
            read = self._try(self.hospital.reports, card)
            self.log.reports_read += sum(r["title"] == title for r in read or [])

    def bill(self, pid: int, card: str, k: int) -> dict | None:
        """Charge the orders this payment is for and bill them."""
        items = [ORDERS[0]] if k == 0 else list(ORDERS[1:])
        if pid not in self.charged:
            self.charged.add(pid)
            items.insert(0, CONSULTATION)
        if self._try(self.hospital.charge, card, items, self.session_of.get(pid)) is None:
            return None
        return self._try(self.hospital.bill, card)

    def settle(self, terminal: TerminalClient, card: str, ec_token: str, bill: dict) -> dict:
        """The bill settled through the e-SSC (raises as the SDK does)."""
        answer = settle_bill(self.hospital, terminal, card, ec_token, bill)
        if answer["state"] == "settled":
            self.log.bills["essc"] += 1
        return answer

    def paid_elsewhere(self, bill: dict, card: str, how: str) -> None:
        """The phone's wallet (self-pay), or a window after a failed phone payment."""
        if self._try(self.hospital.bill_paid, bill["bill_id"], card, how) is not None:
            self.log.bills[how] += 1

    def close(self) -> None:
        """The end of the day: every session's clock past its last slot, the board asked
        once more (its no-show sweep)."""
        for sid in self.sessions.values():
            self._at(sid, LAST_MINUTE)
            self._try(self.hospital.call, sid)

    # ------------------------------------------------------------------ the check
    def _rows(self, source: str) -> list[dict]:
        rows, after = [], None
        while True:
            page = self.hospital.request("GET", f"/hospital/v1/export/{source}",
                                         params={"limit": 5000, **({"after": after}
                                                                   if after else {})})
            rows += page["rows"]
            if not page["more"]:
                return rows
            after = page["cursor"]

    def check(self, cards: dict[int, str]) -> dict[str, Any]:
        """The service's records of the day's sessions against the model's calls."""
        time.sleep(EXPORT_HOLD_S)
        mine = set(self.sessions.values())
        cards_here = set(cards.values())
        bookings = [r for r in self._rows("bookings") if r["session_id"] in mine]
        checkins = [r for r in self._rows("checkins") if r["session_id"] in mine]
        bills = [r for r in self._rows("bills") if r["card_id"] in cards_here]
        states = Counter(r["state"] for r in bookings)
        kinds = Counter({0: "revisit", 1: "holder", 2: "walk-in"}[r["kind"]] for r in checkins)
        paid_by = Counter(r["paid_by"] or "open" for r in bills)
        log = self.log
        first_visits = kinds["holder"] + kinds["walk-in"]
        never_came = len(self.booked - self.on_board)
        out: dict[str, Any] = {
            "sessions": len(mine), "bookings": len(bookings), "booked_by_model": log.booked,
            "unbooked_past_last_slot": log.unbooked, "booking_states": dict(states),
            "checkins": first_visits, "checkins_by_model": log.checked_in,
            "checkin_kinds": dict(kinds), "revisits_by_model": log.revisits,
            "booked_never_checked_in": never_came,
            "called": sum(r["called_at"] is not None for r in checkins),
            "calls_by_model": log.calls, "board_would_have_called_first": log.board_first,
            "reports_published": log.reports, "reports_read_back": log.reports_read,
            "bills_by_paid_by": dict(paid_by), "bills_paid_by_model": dict(log.bills),
            "refusals": dict(log.refusals)}
        out["match"] = (
            len(bookings) == log.booked and first_visits == log.checked_in
            and kinds["revisit"] == log.revisits
            and out["called"] == log.calls == first_visits + kinds["revisit"]
            # every booking ends called or a no-show: a called one was called from the
            # board, and at least every patient who never checked in is a no-show (a
            # very late one too, if the board swept it before they came)
            and states["called"] + states["no_show"] == log.booked
            and states["called"] == sum(r["booking_id"] is not None
                                        and r["called_at"] is not None for r in checkins)
            and states["no_show"] >= never_came
            and log.reports == log.reports_read
            and paid_by.get("open", 0) == 0
            and {k: v for k, v in paid_by.items()} == dict(log.bills)
            and not log.refusals)
        return out
