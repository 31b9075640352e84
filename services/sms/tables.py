"""The SMS gateway's own table: the outbox of messages handed to the provider."""

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table

from ..common.db import serial_id

metadata = MetaData()

outbox = Table(
    "outbox",
    metadata,
    serial_id(),
    Column("phone_digest", String(64), nullable=False),
    Column("phone_enc", String(200), nullable=False),
    Column("text_enc", String(800), nullable=False),  # holds one-time codes: encrypted
    Column("sent_at", DateTime, nullable=False),
    Index("ix_outbox_phone", "phone_digest", "id"),
)
