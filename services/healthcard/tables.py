"""The card-management system's own tables."""

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)

from ..common.cards.audit import chain_columns
from ..common.cards.consent import grant_code_table, holder_table
from ..common.cards.tables import shared_tables
from ..common.cards.usage_sync import scan_columns
from ..common.db import serial_id
from ..common.pii import identity_columns

metadata = MetaData()
(caller_registry, bindings, binding_batches, system_keys, audit_heads, shared_usage,
 sync_cursors, received_seals) = shared_tables(metadata)

# 1 normal, 2 reported lost, 3 cancelled, 4 card confirmed, 5 not issued (docs/sources.md)
cards = Table(
    "cards",
    metadata,
    Column("card_id", String(64), primary_key=True),
    Column("empi", String(64), nullable=False, unique=True),
    *identity_columns(name_digest=True, name_required=False),
    Column("sex", String(1)),
    Column("birth_date", Date),
    Column("state", SmallInteger, nullable=False),
    Column("card_type", SmallInteger, nullable=False, default=0),
    Column("temporary", SmallInteger, nullable=False, default=0),
    Column("linked_card_id", String(64)),
    Column("security_key_id", String(32)),
    Column("issuer", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("id_type", "id_digest", name="uq_card_identity"),
)

card_apps = holder_table(metadata, "card_id", 64)  # the apps that may act for a card
grant_codes = grant_code_table(metadata, "card_id", 64)  # the resident's consent, pending

family_members = Table(
    "family_members",
    metadata,
    Column("owner_card_id", String(64), primary_key=True),
    Column("member_card_id", String(64), primary_key=True),
    Column("relation", String(16), nullable=False),
)

code_uses = Table(
    "code_uses",
    metadata,
    Column("code_digest", LargeBinary(16), primary_key=True),  # SM3(code text)[:16]
    Column("card_id", String(64), nullable=False),
    Column("uses", Integer, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

usage_records = Table(
    "usage_records",
    metadata,
    serial_id(),
    Column("card_id", String(64), nullable=False),
    Column("empi", String(64), nullable=False),
    *scan_columns(),
    Column("city_code", String(6), nullable=False),
    Column("terminal_time", String(14), nullable=False),
    Column("verified_at", DateTime, nullable=False),
    Column("request_id", String(32), nullable=False),
    *chain_columns(),
    Index("ix_usage_institution", "institution_code", "id"),
    Index("ix_usage_chain", "chain_day", "institution_code", "chain_seq"),
    Index("ix_usage_card", "card_id", "id"),
)




patient_links = Table(
    "patient_links",
    metadata,
    Column("institution_code", String(12), primary_key=True),
    Column("local_patient_id", String(64), primary_key=True),
    Column("card_id", String(64), nullable=False),
    UniqueConstraint("institution_code", "card_id", name="uq_link_card"),
)

# purpose: security | protection; state: active | retiring | retired
keys = Table(
    "keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("purpose", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("wrapped", String(64), nullable=False),
    Column("state", String(10), nullable=False),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("purpose", "version", name="uq_key_version"),
)

# a binding sent to the social-card side and not yet countersigned (the coordinator's
# defined in-between state; reconciliation completes or drops it)
binding_pending = Table(
    "binding_pending",
    metadata,
    Column("binding_id", String(32), primary_key=True),
    Column("record", String(600), nullable=False),
    Column("ehc_batch", String(40), nullable=False),
    Column("ehc_index", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
)
