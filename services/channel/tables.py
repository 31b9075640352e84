"""The channel entry's own tables: resident sessions, what each resident claimed, and
the entry's credentials as a channel app of both card systems."""

from sqlalchemy import Column, DateTime, MetaData, SmallInteger, String, Table

from ..common.pii import identity_columns
from ..common.shared_store import shared_events_table

metadata = MetaData()
shared_events = shared_events_table(metadata)  # login throttles, when no Redis is set

challenges = Table(  # strong real-name login: one per code sent (or pretended sent)
    "login_challenges",
    metadata,
    Column("challenge_digest", String(64), primary_key=True),  # SM3 of the challenge ID
    *identity_columns(),  # phone_enc null: no match, nothing was sent
    Column("code_digest", String(64), nullable=False),  # SM3(challenge ID || code)
    Column("tries", SmallInteger, nullable=False),
    Column("used", SmallInteger, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_digest", String(64), primary_key=True),  # SM3 of the bearer token
    *identity_columns(),
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
