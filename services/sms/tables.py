"""The SMS gateway's own table: the outbox of messages handed to the provider."""

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, MetaData, String, Table

metadata = MetaData()

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("phone_digest", String(64), nullable=False),
    Column("phone_enc", String(200), nullable=False),
    Column("text_enc", String(800), nullable=False),  # holds one-time codes: encrypted
    Column("sent_at", DateTime, nullable=False),
    Index("ix_outbox_phone", "phone_digest", "id"),
)
