"""The channel entry's own tables: resident sessions, what each resident claimed, and
the entry's credentials as a channel app of both card systems."""

from sqlalchemy import Column, DateTime, MetaData, String, Table

from ..common.pii import ENCRYPTED_NAME

metadata = MetaData()

sessions = Table(
    "sessions",
    metadata,
    Column("token_digest", String(64), primary_key=True),  # SM3 of the bearer token
    Column("id_type", String(2), nullable=False),
    Column("id_digest", String(64), nullable=False),
    Column("id_number_enc", String(200), nullable=False),
    Column("name_enc", String(ENCRYPTED_NAME), nullable=False),
    Column("phone_enc", String(200)),
    Column("expires_at", DateTime, nullable=False),
)

residents = Table(
    "residents",
    metadata,
    Column("id_digest", String(64), primary_key=True),
    Column("ehc_card_id", String(64)),
    Column("ssc_card_no", String(20)),
    Column("region", String(6)),
)

credentials = Table(
    "credentials",
    metadata,
    Column("name", String(16), primary_key=True),
    Column("app_key", String(64), nullable=False),
    Column("secret_enc", String(300), nullable=False),
)
