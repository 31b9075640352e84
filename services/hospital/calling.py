"""Check-in and the calling board.

A card scanned at the department's terminal (a real verification with the EHC system,
done by the hospital's system before it calls this) checks its holder in:
- with a live booking in the session, no later than ``LATE_GRACE_MIN`` after its slot's
  time: an appointment holder, who waits from the slot's time (precise appointment);
- later than that: a walk-in, in order of arrival (the documented rule for late
  arrivals; the booking is kept as checked in);
- without a booking: a walk-in;
- seen by the doctor already today in this session and back with results: a revisit.
The board calls the next patient by the outpatient calling rule the twin uses
(``services.rules.calling``: revisits, then holders at their time interleaved with
walk-ins); a doctor may call a named patient out of turn (the board's recall), who must
be waiting and due. A booking not checked in by the end of its slot plus the grace is a
no-show. A drill session reads all of this against its operator's clock.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..common.cst import utc_now
from ..common.errors import Conflict, NotFound
from ..rules.calling import HOLDER, REVISIT, WALK_IN, after_call, next_to_call
from .schedule import Schedule, clock
from .tables import bookings, queue, sessions

LATE_GRACE_MIN = 10
KIND_NAMES = {REVISIT: "revisit", HOLDER: "holder", WALK_IN: "walk-in"}


class Calling:
    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.engine = schedule.engine

    def _today(self, conn, session_id: int) -> tuple[Any, int]:
        """The session (locked) and its clock's minute, if the session is today."""
        s = self.schedule.session(conn, session_id, lock=True)
        day, now = self.schedule.now_of(conn, s)
        if s.day != day:
            raise Conflict("SESSION_NOT_TODAY", "the session is not today")
        return s, now

    def check_in(self, session_id: int, card_id: str, revisit: bool = False) -> dict:
        with self.engine.begin() as conn:
            _, now = self._today(conn, session_id)
            if conn.execute(sa.select(queue.c.id).where(
                    queue.c.session_id == session_id, queue.c.card_id == card_id,
                    queue.c.called_at.is_(None))).first() is not None:
                raise Conflict("ALREADY_WAITING", "this card waits in this session already")
            booking = conn.execute(sa.select(bookings).where(
                bookings.c.live == f"{session_id}:{card_id}")).first()
            if revisit:
                seen = conn.execute(sa.select(queue.c.id).where(
                    queue.c.session_id == session_id, queue.c.card_id == card_id,
                    queue.c.called_at.is_not(None))).first()
                if seen is None:
                    raise Conflict("NOT_SEEN_YET", "a revisit follows a first call")
                kind, due, bid = REVISIT, now, None
            elif booking is not None and booking.state == "booked" and \
                    now <= booking.slot_min + LATE_GRACE_MIN:
                kind, due, bid = HOLDER, booking.slot_min, booking.booking_id
            else:  # a late holder keeps the booking, called in turn as a walk-in
                kind, due = WALK_IN, now
                bid = booking.booking_id if booking is not None and \
                    booking.state == "booked" else None
            if booking is not None and booking.state == "booked":
                conn.execute(bookings.update().where(
                    bookings.c.booking_id == booking.booking_id)
                    .values(state="checked_in", updated_at=utc_now()))
            conn.execute(queue.insert().values(
                session_id=session_id, card_id=card_id, kind=kind, booking_id=bid,
                due_min=due, joined_at=utc_now()))
        return {"session_id": session_id, "card_id": card_id, "kind": KIND_NAMES[kind],
                "due": clock(due), **self.position(session_id, card_id)}

    def _waiting(self, conn, session_id: int) -> list[Any]:
        return conn.execute(sa.select(queue).where(
            queue.c.session_id == session_id, queue.c.called_at.is_(None))
            .order_by(queue.c.due_min, queue.c.id)).all()

    @staticmethod
    def _order(waiting: list[Any], in_a_row: int, per_walk_in: int, now: int) -> list[Any]:
        """The order the board will call the waiting in, if nobody else arrives (a holder
        counts from their slot's time)."""
        left, out = list(waiting), []
        while left:
            due = [w for w in left if w.kind != HOLDER or w.due_min <= now] or left
            revisits, holders, walk_ins = (sum(1 for w in due if w.kind == k)
                                           for k in (REVISIT, HOLDER, WALK_IN))
            kind = next_to_call((revisits, holders, walk_ins), in_a_row, per_walk_in)
            assert kind is not None  # someone is due
            pick = next(w for w in due if w.kind == kind)
            in_a_row = after_call(kind, in_a_row)
            out.append(pick)
            left.remove(pick)
            now = max(now, pick.due_min)
        return out

    def call(self, session_id: int, card_id: str | None = None) -> dict | None:
        """The next patient for the doctor (or the named one, out of turn), or None when
        nobody (due) waits."""
        with self.engine.begin() as conn:
            s, now = self._today(conn, session_id)
            self._no_shows(conn, s, now)
            due = [w for w in self._waiting(conn, session_id)
                   if w.kind != HOLDER or w.due_min <= now]
            if card_id is not None:
                named = [w for w in due if w.card_id == card_id]
                if not named:
                    raise NotFound("NOT_WAITING", "this card is not waiting and due here")
                pick = named[0]
            elif not due:
                return None
            else:
                pick = self._order(due, s.holders_in_a_row, s.holders_per_walk_in, now)[0]
            conn.execute(queue.update().where(queue.c.id == pick.id)
                         .values(called_at=utc_now()))
            conn.execute(sessions.update().where(sessions.c.id == session_id).values(
                holders_in_a_row=after_call(pick.kind, s.holders_in_a_row)))
            if pick.booking_id is not None:
                conn.execute(bookings.update().where(
                    bookings.c.booking_id == pick.booking_id)
                    .values(state="called", live=None, updated_at=utc_now()))
        return {"card_id": pick.card_id, "kind": KIND_NAMES[pick.kind],
                "booking_id": pick.booking_id, "due": clock(pick.due_min)}

    def _no_shows(self, conn, s: Any, now: int) -> None:
        conn.execute(bookings.update().where(
            bookings.c.session_id == s.id, bookings.c.state == "booked",
            bookings.c.slot_min + s.slot_min + LATE_GRACE_MIN < now)
            .values(state="no_show", live=None, updated_at=utc_now()))

    def position(self, session_id: int, card_id: str) -> dict[str, Any]:
        """Where a card stands on the board and the expected wait (the patients ahead of
        it at the session's pace, ``slot_min / per_slot`` minutes each)."""
        with self.engine.connect() as conn:
            s = self.schedule.session(conn, session_id)
            waiting = self._waiting(conn, session_id)
            _, now = self.schedule.now_of(conn, s)
        order = self._order(waiting, s.holders_in_a_row, s.holders_per_walk_in, now)
        ahead = next((i for i, w in enumerate(order) if w.card_id == card_id), None)
        if ahead is None:
            raise NotFound("NOT_WAITING", "this card does not wait in this session")
        me = order[ahead]
        pace = s.slot_min / max(s.per_slot, 1)
        wait = max(ahead * pace, (me.due_min - now) if me.kind == HOLDER else 0.0)
        return {"position": ahead + 1, "ahead": ahead, "expected_wait_min": round(wait, 1)}
