"""The hospital service's own tables."""

import sqlalchemy as sa

from ..common.db import Export, serial_id

metadata = sa.MetaData()

departments = sa.Table(
    "departments", metadata,
    sa.Column("dept_code", sa.String(4), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
)

doctors = sa.Table(
    "doctors", metadata,
    sa.Column("doctor_id", sa.String(16), primary_key=True),
    sa.Column("dept_code", sa.String(4), nullable=False),
    sa.Column("name", sa.String(64), nullable=False),
)

# a doctor's session on a day: slots of `slot_min` minutes from `start_min` to `end_min`
# (minutes after midnight, China Standard Time), `per_slot` patients each, of which a
# share (per mille) is kept for walk-ins; `calls_version` orders the bookings and calls
# of the session (its row is the session's lock)
sessions = sa.Table(
    "sessions", metadata,
    serial_id(),
    sa.Column("doctor_id", sa.String(16), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("start_min", sa.Integer, nullable=False),
    sa.Column("end_min", sa.Integer, nullable=False),
    sa.Column("slot_min", sa.Integer, nullable=False),
    sa.Column("per_slot", sa.Integer, nullable=False),
    sa.Column("walk_in_permille", sa.Integer, nullable=False),
    sa.Column("holders_per_walk_in", sa.Integer, nullable=False),
    sa.Column("holders_in_a_row", sa.Integer, nullable=False, server_default="0"),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.UniqueConstraint("doctor_id", "day", "start_min", name="uq_session_start"),
)

# booked | cancelled | checked_in | called | no_show; one live booking per card and
# session (`live` is the session and card while booked or checked in, else NULL)
bookings = sa.Table(
    "bookings", metadata,
    sa.Column("booking_id", sa.String(24), primary_key=True),
    sa.Column("session_id", sa.BigInteger, nullable=False),
    sa.Column("slot_min", sa.Integer, nullable=False),
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(12), nullable=False),
    sa.Column("live", sa.String(96), unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_bookings_slot", "session_id", "slot_min", "state"),
    sa.Index("ix_bookings_card", "card_id"),
    sa.Index("ix_bookings_updated", "updated_at", "booking_id"),  # the data layer's pages
)

# the waiting room of a session: kind 0 revisit, 1 appointment holder, 2 walk-in
# (services.rules.calling); a holder waits from their slot's time
queue = sa.Table(
    "queue", metadata,
    serial_id(),
    sa.Column("session_id", sa.BigInteger, nullable=False),
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("booking_id", sa.String(24)),
    sa.Column("due_min", sa.Integer, nullable=False),  # the slot's time, or arrival
    sa.Column("called_at", sa.DateTime),
    sa.Column("joined_at", sa.DateTime, nullable=False),
    sa.Index("ix_queue_session", "session_id", "called_at", "kind"),
)

# a drill session (training, co-simulation) keeps the clock its operator sets, not the
# wall clock: minutes after midnight of the session's day
drill_clocks = sa.Table(
    "drill_clocks", metadata,
    sa.Column("session_id", sa.BigInteger, primary_key=True),
    sa.Column("at_min", sa.Integer, nullable=False),
)

# what a visit owes: items charged to a card (the doctor's orders) until a bill takes them
fees = sa.Table(
    "fees", metadata,
    serial_id(),
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.Column("session_id", sa.BigInteger),
    sa.Column("code", sa.String(32), nullable=False),
    sa.Column("category", sa.String(1), nullable=False),  # A | B | C (the policy's)
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("bill_id", sa.String(24)),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_fees_card", "card_id", "bill_id"),
)

# the hand-off to settlement: a bill gathers a card's open fees; paid through the e-SSC
# settlement (its ID kept), the phone's wallet (self-pay) or a window; one open bill per
# card (`open_card` is the card while open, else NULL)
bills = sa.Table(
    "bills", metadata,
    sa.Column("bill_id", sa.String(24), primary_key=True),
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # open | paid
    sa.Column("open_card", sa.String(64), unique=True),
    sa.Column("amount_fen", sa.BigInteger, nullable=False),
    sa.Column("paid_by", sa.String(8)),  # essc | self_pay | window
    sa.Column("settlement_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_bills_card", "card_id"),
    sa.Index("ix_bills_updated", "updated_at", "bill_id"),  # the data layer's pages
)

reports = sa.Table(
    "reports", metadata,
    serial_id(),
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # lab | imaging
    sa.Column("title", sa.String(128), nullable=False),
    sa.Column("body", sa.String(4000), nullable=False),
    sa.Column("published_at", sa.DateTime, nullable=False),
    sa.Index("ix_reports_card", "card_id", "id"),
)

# what the data resources layer may read (GET /hospital/v1/export/{source}): card IDs only
EXPORTS = {
    "bookings": Export(bookings, ("booking_id", "session_id", "slot_min", "card_id", "state",
                                  "created_at", "updated_at"), ("updated_at", "booking_id"),
                       "updated_at"),
    "checkins": Export(queue, ("id", "session_id", "card_id", "kind", "booking_id", "due_min",
                               "joined_at", "called_at"), ("id",), "joined_at"),
    "bills": Export(bills, ("bill_id", "card_id", "state", "amount_fen", "paid_by",
                            "settlement_id", "created_at", "updated_at"),
                    ("updated_at", "bill_id"), "updated_at"),
}
