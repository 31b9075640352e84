"""Departments, doctors, their sessions and the appointment slots, and bookings by card.

Rules (each refusal a stable code):
- a slot holds ``per_slot`` patients, of whom a share (``walk_in_permille``) is kept for
  walk-ins: ``floor(per_slot x (1 - share))`` may book it (``SLOT_FULL`` beyond);
- a card holds at most one live booking in a session (``ALREADY_BOOKED``);
- a slot whose time has come can no longer be booked, cancelled or moved
  (``SLOT_PASSED``); a booking belongs to its card: another card's, or none, is
  ``BOOKING_NOT_FOUND`` alike;
- a booking is taken with the session's row locked (the count and the insert in one
  transaction): a slot never holds more than it may, however many book at once, and a
  booking interrupted midway leaves nothing;
- a drill session (training, a co-simulated day) runs on the clock its operator sets
  (``PUT /hospital/v1/admin/sessions/{id}/clock``), every rule above and the calling
  board's read against it; any other session runs on the wall clock (China Standard
  Time) and refuses to have it set (``NOT_A_DRILL``).
"""

from __future__ import annotations

import secrets
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from ..common.cst import CST, utc_now
from ..common.errors import Conflict, Invalid, NotFound
from .tables import bookings, departments, doctors, drill_clocks, sessions

LIVE = ("booked", "checked_in")


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def minutes(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def now_cst() -> tuple[date, int]:
    """Today in China Standard Time and the minutes after its midnight."""
    t = datetime.now(CST)
    return t.date(), t.hour * 60 + t.minute


class Schedule:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ the hospital
    def add_department(self, code: str, name: str) -> None:
        self._insert(departments, "DEPARTMENT_EXISTS", dept_code=code, name=name)

    def add_doctor(self, doctor_id: str, dept_code: str, name: str) -> None:
        with self.engine.connect() as conn:
            if conn.execute(sa.select(departments.c.dept_code).where(
                    departments.c.dept_code == dept_code)).first() is None:
                raise NotFound("DEPARTMENT_NOT_FOUND", "no such department")
        self._insert(doctors, "DOCTOR_EXISTS", doctor_id=doctor_id, dept_code=dept_code,
                     name=name)

    def add_session(self, doctor_id: str, day: date, start: int, end: int, slot_min: int,
                    per_slot: int, walk_in_permille: int, holders_per_walk_in: int,
                    drill: bool = False) -> int:
        """A doctor's session; a drill's clock starts at the day's midnight."""
        if not start < end or (end - start) % slot_min:
            raise Invalid("INVALID_REQUEST", "a session runs from start to end in whole slots")
        with self.engine.connect() as conn:
            if conn.execute(sa.select(doctors.c.doctor_id).where(
                    doctors.c.doctor_id == doctor_id)).first() is None:
                raise NotFound("DOCTOR_NOT_FOUND", "no such doctor")

        def drill_clock(conn, sid: int) -> None:
            if drill:
                conn.execute(drill_clocks.insert().values(session_id=sid, at_min=0))
        return int(self._insert(
            sessions, "SESSION_EXISTS", drill_clock, doctor_id=doctor_id, day=day,
            start_min=start, end_min=end, slot_min=slot_min, per_slot=per_slot,
            walk_in_permille=walk_in_permille, holders_per_walk_in=holders_per_walk_in))

    def _insert(self, table: sa.Table, exists: str, then=None, **values: Any) -> Any:
        """Insert a row (``then(conn, key)`` in the same transaction)."""
        try:
            with self.engine.begin() as conn:
                key = conn.execute(table.insert().values(**values)).inserted_primary_key
                if then is not None and key:
                    then(conn, key[0])
        except sa.exc.IntegrityError:
            raise Conflict(exists, "registered already") from None
        return key[0] if key else None

    # ------------------------------------------------------------------ the clock
    @staticmethod
    def now_of(conn, s: Any) -> tuple[date, int]:
        """The session's clock: its operator's for a drill, else the wall clock."""
        at = conn.execute(sa.select(drill_clocks.c.at_min).where(
            drill_clocks.c.session_id == s.id)).scalar_one_or_none()
        return now_cst() if at is None else (s.day, int(at))

    def set_clock(self, session_id: int, at_min: int) -> dict[str, Any]:
        """Set a drill session's clock (forwards or back: a drill replays what it likes)."""
        with self.engine.begin() as conn:
            s = self.session(conn, session_id)
            if not conn.execute(drill_clocks.update().where(
                    drill_clocks.c.session_id == session_id).values(at_min=at_min)).rowcount:
                raise Conflict("NOT_A_DRILL", "the session runs on the wall clock")
        return {"session_id": session_id, "day": s.day.isoformat(), "at": clock(at_min)}

    # ------------------------------------------------------------------ sessions
    def session(self, conn, session_id: int, lock: bool = False) -> Any:
        """The session's row; with ``lock``, taken for this transaction (the version is
        bumped first: SQLite and PostgreSQL alike serialise on it)."""
        if lock:
            conn.execute(sessions.update().where(sessions.c.id == session_id)
                         .values(version=sessions.c.version + 1))
        row = conn.execute(sa.select(sessions).where(sessions.c.id == session_id)).first()
        if row is None:
            raise NotFound("SESSION_NOT_FOUND", "no such session")
        return row

    @staticmethod
    def bookable(s: Any) -> int:
        return s.per_slot * (1000 - s.walk_in_permille) // 1000

    def slots(self, session_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            s = self.session(conn, session_id)
            taken = {int(m): int(n) for m, n in conn.execute(
                sa.select(bookings.c.slot_min, sa.func.count()).where(
                    bookings.c.session_id == session_id, bookings.c.state.in_(LIVE))
                .group_by(bookings.c.slot_min))}
            day, now = self.now_of(conn, s)
        return [{"slot": clock(m), "bookable": self.bookable(s), "booked": taken.get(m, 0),
                 "free": max(self.bookable(s) - taken.get(m, 0), 0),
                 "passed": (s.day, m) <= (day, now)}
                for m in range(s.start_min, s.end_min, s.slot_min)]

    # ------------------------------------------------------------------ bookings
    def book(self, session_id: int, slot: str, card_id: str) -> dict[str, Any]:
        with self.engine.begin() as conn:
            return self._book(conn, session_id, minutes(slot), card_id)

    def _book(self, conn, session_id: int, slot_min: int, card_id: str) -> dict[str, Any]:
        s = self.session(conn, session_id, lock=True)
        if slot_min < s.start_min or slot_min >= s.end_min or \
                (slot_min - s.start_min) % s.slot_min:
            raise Invalid("INVALID_REQUEST", "not a slot of this session")
        if (s.day, slot_min) <= self.now_of(conn, s):
            raise Conflict("SLOT_PASSED", "the slot's time has come")
        if conn.execute(sa.select(bookings.c.booking_id).where(
                bookings.c.live == f"{session_id}:{card_id}")).first() is not None:
            raise Conflict("ALREADY_BOOKED", "this card holds a booking in this session")
        taken = conn.execute(sa.select(sa.func.count()).where(
            bookings.c.session_id == session_id, bookings.c.slot_min == slot_min,
            bookings.c.state.in_(LIVE))).scalar_one()
        if taken >= self.bookable(s):
            raise Conflict("SLOT_FULL", "the slot is fully booked")
        now = utc_now()
        row = {"booking_id": secrets.token_hex(12), "session_id": session_id,
               "slot_min": slot_min, "card_id": card_id, "state": "booked",
               "live": f"{session_id}:{card_id}", "created_at": now, "updated_at": now}
        conn.execute(bookings.insert().values(**row))  # the session is locked: no race
        return self.view(row, s.day)

    def _owned(self, conn, booking_id: str, card_id: str) -> Any:
        row = conn.execute(sa.select(bookings).where(
            bookings.c.booking_id == booking_id, bookings.c.card_id == card_id)).first()
        if row is None:
            raise NotFound("BOOKING_NOT_FOUND", "no such booking for this card")
        return row

    def cancel(self, booking_id: str, card_id: str) -> dict[str, Any]:
        with self.engine.begin() as conn:
            b = self._owned(conn, booking_id, card_id)
            s = self.session(conn, b.session_id, lock=True)
            self._release(conn, b, s)
            return self.view({**b._asdict(), "state": "cancelled"}, s.day)

    def reschedule(self, booking_id: str, card_id: str, slot: str) -> dict[str, Any]:
        """Another slot of the same session, or nothing changes (one transaction)."""
        with self.engine.begin() as conn:
            b = self._owned(conn, booking_id, card_id)
            s = self.session(conn, b.session_id, lock=True)
            self._release(conn, b, s)
            return self._book(conn, b.session_id, minutes(slot), card_id)

    def _release(self, conn, b: Any, s: Any) -> None:
        if b.state != "booked":
            raise Conflict("BOOKING_STATE_CONFLICT", f"the booking is {b.state}")
        if (s.day, b.slot_min) <= self.now_of(conn, s):
            raise Conflict("SLOT_PASSED", "the slot's time has come")
        conn.execute(bookings.update().where(bookings.c.booking_id == b.booking_id)
                     .values(state="cancelled", live=None, updated_at=utc_now()))

    def of_card(self, card_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(bookings, sessions.c.day).join(
                sessions, sessions.c.id == bookings.c.session_id).where(
                bookings.c.card_id == card_id).order_by(bookings.c.created_at)).all()
        return [self.view(r._asdict(), r.day) for r in rows]

    @staticmethod
    def view(row: dict[str, Any], day: date) -> dict[str, Any]:
        return {"booking_id": row["booking_id"], "session_id": row["session_id"],
                "day": day.isoformat(), "slot": clock(row["slot_min"]),
                "card_id": row["card_id"], "state": row["state"]}
