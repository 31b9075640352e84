"""The e-SSC system's own tables (nobody else reads them)."""

import sqlalchemy as sa

from ..common.cards.audit import chain_columns
from ..common.cards.consent import grant_code_table, holder_table
from ..common.cards.feeds import scan_columns
from ..common.cards.tables import SCAN, shared_exports, shared_tables
from ..common.db import Export, serial_id
from ..common.pii import identity_columns

metadata = sa.MetaData()
shared = shared_tables(metadata)
(caller_registry, bindings, binding_batches, system_keys, audit_heads, shared_usage,
 sync_cursors, received_seals) = shared

# an insured person and their e-SSC card (one card per person here); e-SSC states
# (docs/sources.md): 0 not enabled, 1 normal, 2 lost, 7 void, 8 pre-lost, 9 cancelled
insured = sa.Table(
    "insured",
    metadata,
    sa.Column("ssc_card_no", sa.String(20), primary_key=True),
    *identity_columns(),
    sa.Column("region", sa.String(6), nullable=False),
    sa.Column("insurance_type", sa.String(3), nullable=False),
    sa.Column("account_balance_fen", sa.BigInteger, nullable=False),
    sa.Column("card_state", sa.SmallInteger, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("id_type", "id_digest", name="uq_insured_identity"),
    sa.Index("ix_insured_state", "card_state", "ssc_card_no"),
)

card_apps = holder_table(metadata, "ssc_card_no", 20)  # the apps that may act for a card
grant_codes = grant_code_table(metadata, "ssc_card_no", 20)  # the resident's consent, pending

usage_records = sa.Table(
    "usage_records",
    metadata,
    serial_id(),
    sa.Column("ssc_card_no", sa.String(20), nullable=False),
    *scan_columns(),
    sa.Column("verified_at", sa.DateTime, nullable=False),
    *chain_columns(),
    sa.Index("ix_essc_usage_card", "ssc_card_no", "id"),
    sa.Index("ix_essc_usage_chain", "chain_day", "institution_code", "chain_seq"),
)

# insurance voucher tokens (ecToken): 38 characters, the 6-digit area code first
ec_tokens = sa.Table(
    "ec_tokens",
    metadata,
    sa.Column("token", sa.String(38), primary_key=True),
    sa.Column("ssc_card_no", sa.String(20), nullable=False),
    sa.Column("institution_code", sa.String(12), nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    # the one settlement this voucher opened (single use, claimed atomically)
    sa.Column("settlement_id", sa.String(30)),
)

# e-SSC codes already verified (one use each)
code_uses = sa.Table(
    "code_uses",
    metadata,
    sa.Column("nonce", sa.String(16), primary_key=True),
    sa.Column("expires_at", sa.DateTime, nullable=False),
)

# one outpatient settlement (its ID is a national message ID: institution code (12) +
# yyyyMMddHHmmss (14) + sequence (4)); states, in order: uploaded, presettled, paying
# (insurance part committed, cash being paid), awaiting_confirmation (the gateway's answer
# is unknown), settled | payment_failed (the insurance part returned), and reversed or
# cancelled; unresolved: the gateway stayed silent through every confirmation (an operator's)
settlements = sa.Table(
    "settlements",
    metadata,
    sa.Column("settlement_id", sa.String(30), primary_key=True),
    sa.Column("institution_code", sa.String(12), nullable=False),
    sa.Column("ssc_card_no", sa.String(20), nullable=False),
    sa.Column("level", sa.SmallInteger, nullable=False),
    sa.Column("items", sa.String(20000), nullable=False),  # JSON of the fee items
    sa.Column("channel", sa.String(10), nullable=False),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("total_fen", sa.BigInteger, nullable=False),
    sa.Column("fund_fen", sa.BigInteger),
    sa.Column("account_fen", sa.BigInteger),
    sa.Column("cash_fen", sa.BigInteger),
    sa.Column("deductible_fen", sa.BigInteger),
    sa.Column("policy", sa.String(40)),
    sa.Column("usage_record_id", sa.BigInteger),
    sa.Column("ec_token", sa.String(38)),  # the voucher that opened it
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    # the sweep's confirmations of an open cash part: how many, and when the next is due
    sa.Column("confirm_attempts", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("next_confirm_at", sa.DateTime),
    sa.Index("ix_settlements_created", "created_at"),
    sa.Index("ix_settlements_updated", "updated_at", "settlement_id"),  # the data layer
    sa.Index("ix_settlements_confirm", "state", "next_confirm_at"),
    sa.Index("ix_settlements_token", "ec_token"),
)

message_sequences = sa.Table(
    "message_sequences",
    metadata,
    sa.Column("prefix", sa.String(26), primary_key=True),  # institution + second
    sa.Column("last", sa.Integer, nullable=False),
)

# what each person's year has used (deductible, fund) for the deductible and the cap
accumulators = sa.Table(
    "accumulators",
    metadata,
    sa.Column("ssc_card_no", sa.String(20), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("deductible_used_fen", sa.BigInteger, nullable=False),
    sa.Column("fund_used_fen", sa.BigInteger, nullable=False),
)

# double entry: every posting of a settlement balances (debits = credits)
ledger = sa.Table(
    "ledger",
    metadata,
    serial_id(),
    sa.Column("settlement_id", sa.String(30), nullable=False),
    sa.Column("posting", sa.String(12), nullable=False),  # settle | cash | reverse | refund
    sa.Column("account", sa.String(40), nullable=False),
    sa.Column("debit_fen", sa.BigInteger, nullable=False),
    sa.Column("credit_fen", sa.BigInteger, nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),
    *chain_columns(),
    sa.Index("ix_ledger_settlement", "settlement_id"),
    sa.Index("ix_ledger_chain", "chain_day", "chain_seq"),
)

# idempotency keys of state-changing calls: a retry gets the first answer
idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("institution_code", sa.String(12), primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),  # 0 while in progress
    sa.Column("body", sa.String(20000)),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# what the data resources layer may read (GET /essc/v1/export/{source}): pseudonyms only
EXPORTS = {
    "usage": Export(usage_records, ("id", "ssc_card_no", *SCAN, "verified_at"), ("id",),
                    "verified_at"),
    "settlements": Export(settlements, ("settlement_id", "institution_code", "ssc_card_no",
                                        "level", "channel", "state", "total_fen", "fund_fen",
                                        "account_fen", "cash_fen", "deductible_fen",
                                        "usage_record_id", "created_at", "updated_at"),
                          ("updated_at", "settlement_id"), "updated_at"),
    "ledger": Export(ledger, ("id", "settlement_id", "posting", "account", "debit_fen",
                              "credit_fen", "at"), ("id",), "at"),
    **shared_exports(shared),
}
