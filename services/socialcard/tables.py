"""The e-SSC system's own tables (nobody else reads them)."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
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

# an insured person and their e-SSC card (one card per person here); e-SSC states
# (docs/sources.md): 0 not enabled, 1 normal, 2 lost, 7 void, 8 pre-lost, 9 cancelled
insured = Table(
    "insured",
    metadata,
    Column("ssc_card_no", String(20), primary_key=True),
    *identity_columns(),
    Column("region", String(6), nullable=False),
    Column("insurance_type", String(3), nullable=False),
    Column("account_balance_fen", BigInteger, nullable=False),
    Column("card_state", SmallInteger, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("id_type", "id_digest", name="uq_insured_identity"),
    Index("ix_insured_state", "card_state", "ssc_card_no"),
)

card_apps = holder_table(metadata, "ssc_card_no", 20)  # the apps that may act for a card
grant_codes = grant_code_table(metadata, "ssc_card_no", 20)  # the resident's consent, pending

usage_records = Table(
    "usage_records",
    metadata,
    serial_id(),
    Column("ssc_card_no", String(20), nullable=False),
    *scan_columns(),
    Column("verified_at", DateTime, nullable=False),
    *chain_columns(),
    Index("ix_essc_usage_card", "ssc_card_no", "id"),
    Index("ix_essc_usage_chain", "chain_day", "institution_code", "chain_seq"),
)

# insurance voucher tokens (ecToken): 38 characters, the 6-digit area code first
ec_tokens = Table(
    "ec_tokens",
    metadata,
    Column("token", String(38), primary_key=True),
    Column("ssc_card_no", String(20), nullable=False),
    Column("institution_code", String(12), nullable=False),
    Column("expires_at", DateTime, nullable=False),
    # the one settlement this voucher opened (single use, claimed atomically)
    Column("settlement_id", String(30)),
)

# e-SSC codes already verified (one use each)
code_uses = Table(
    "code_uses",
    metadata,
    Column("nonce", String(16), primary_key=True),
    Column("expires_at", DateTime, nullable=False),
)

# one outpatient settlement (its ID is a national message ID: institution code (12) +
# yyyyMMddHHmmss (14) + sequence (4)); states, in order: uploaded, presettled, paying
# (insurance part committed, cash being paid), awaiting_confirmation (the gateway's answer
# is unknown), settled | payment_failed (the insurance part returned), and reversed or
# cancelled; unresolved: the gateway stayed silent through every confirmation (an operator's)
settlements = Table(
    "settlements",
    metadata,
    Column("settlement_id", String(30), primary_key=True),
    Column("institution_code", String(12), nullable=False),
    Column("ssc_card_no", String(20), nullable=False),
    Column("level", SmallInteger, nullable=False),
    Column("items", String(20000), nullable=False),  # JSON of the fee items
    Column("channel", String(10), nullable=False),
    Column("state", String(24), nullable=False),
    Column("total_fen", BigInteger, nullable=False),
    Column("fund_fen", BigInteger),
    Column("account_fen", BigInteger),
    Column("cash_fen", BigInteger),
    Column("deductible_fen", BigInteger),
    Column("policy", String(40)),
    Column("usage_record_id", BigInteger),
    Column("ec_token", String(38)),  # the voucher that opened it
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    # the sweep's confirmations of an open cash part: how many, and when the next is due
    Column("confirm_attempts", SmallInteger, nullable=False, server_default="0"),
    Column("next_confirm_at", DateTime),
    Index("ix_settlements_created", "created_at"),
    Index("ix_settlements_confirm", "state", "next_confirm_at"),
    Index("ix_settlements_token", "ec_token"),
)

message_sequences = Table(
    "message_sequences",
    metadata,
    Column("prefix", String(26), primary_key=True),  # institution + second
    Column("last", Integer, nullable=False),
)

# what each person's year has used (deductible, fund) for the deductible and the cap
accumulators = Table(
    "accumulators",
    metadata,
    Column("ssc_card_no", String(20), primary_key=True),
    Column("year", Integer, primary_key=True),
    Column("deductible_used_fen", BigInteger, nullable=False),
    Column("fund_used_fen", BigInteger, nullable=False),
)

# double entry: every posting of a settlement balances (debits = credits)
ledger = Table(
    "ledger",
    metadata,
    serial_id(),
    Column("settlement_id", String(30), nullable=False),
    Column("posting", String(12), nullable=False),  # settle | cash | reverse | refund
    Column("account", String(40), nullable=False),
    Column("debit_fen", BigInteger, nullable=False),
    Column("credit_fen", BigInteger, nullable=False),
    Column("at", DateTime, nullable=False),
    *chain_columns(),
    Index("ix_ledger_settlement", "settlement_id"),
    Index("ix_ledger_chain", "chain_day", "chain_seq"),
)

# idempotency keys of state-changing calls: a retry gets the first answer
idempotency = Table(
    "idempotency",
    metadata,
    Column("institution_code", String(12), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),  # 0 while in progress
    Column("body", String(20000)),
    Column("created_at", DateTime, nullable=False),
)
