"""The payment gateway's own tables."""

from sqlalchemy import BigInteger, Column, DateTime, Index, MetaData, String, Table

metadata = MetaData()

# status: pending (outcome not known yet) | success | failed | refunded
payments = Table(
    "payments",
    metadata,
    Column("order_id", String(40), primary_key=True),  # the merchant's order (settlement)
    Column("merchant", String(12), nullable=False),  # the hospital's institution code
    Column("channel", String(10), nullable=False),
    Column("amount_fen", BigInteger, nullable=False),
    Column("status", String(10), nullable=False),
    Column("trade_no", String(32), nullable=False),
    Column("resolve_at", DateTime),  # when a pending payment settles by itself
    Column("resolve_to", String(10)),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_payments_created", "created_at"),
    Index("ix_payments_due", "status", "resolve_at"),
)
