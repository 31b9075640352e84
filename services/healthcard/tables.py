"""The card-management system's own tables."""

import sqlalchemy as sa

from ..common.cards.audit import chain_columns
from ..common.cards.consent import grant_code_table, holder_table
from ..common.cards.feeds import scan_columns
from ..common.cards.tables import SCAN, shared_exports, shared_tables
from ..common.cst import cst_today
from ..common.db import Export, serial_id
from ..common.pii import identity_columns
from ..rules.ages import age_group

metadata = sa.MetaData()
shared = shared_tables(metadata)
(caller_registry, bindings, binding_batches, system_keys, audit_heads, shared_usage,
 sync_cursors, received_seals) = shared

# 1 normal, 2 reported lost, 3 cancelled, 4 card confirmed, 5 not issued (docs/sources.md)
cards = sa.Table(
    "cards",
    metadata,
    sa.Column("card_id", sa.String(64), primary_key=True),
    sa.Column("empi", sa.String(64), nullable=False, unique=True),
    *identity_columns(name_digest=True, name_required=False),
    sa.Column("sex", sa.String(1)),
    sa.Column("birth_date", sa.Date),
    sa.Column("state", sa.SmallInteger, nullable=False),
    sa.Column("card_type", sa.SmallInteger, nullable=False, default=0),
    sa.Column("temporary", sa.SmallInteger, nullable=False, default=0),
    sa.Column("linked_card_id", sa.String(64)),
    sa.Column("security_key_id", sa.String(32)),
    sa.Column("issuer", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("id_type", "id_digest", name="uq_card_identity"),
    sa.Index("ix_cards_updated", "updated_at", "card_id"),  # the data layer's keyset
)

card_apps = holder_table(metadata, "card_id", 64)  # the apps that may act for a card
grant_codes = grant_code_table(metadata, "card_id", 64)  # the resident's consent, pending

family_members = sa.Table(
    "family_members",
    metadata,
    sa.Column("owner_card_id", sa.String(64), primary_key=True),
    sa.Column("member_card_id", sa.String(64), primary_key=True),
    sa.Column("relation", sa.String(16), nullable=False),
)

# a dynamic code's verifications, kept while the code could still pass its expiry check
# (the hot path's sweep drops the rest: verify._SWEEP_USES); on SQLite the key is the
# table (no rowid): one page a scan's count writes, not two
code_uses = sa.Table(
    "code_uses",
    metadata,
    sa.Column("code_digest", sa.LargeBinary(16), primary_key=True),  # SM3(code text)[:16]
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.Column("uses", sa.Integer, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sqlite_with_rowid=False,
)

usage_records = sa.Table(
    "usage_records",
    metadata,
    serial_id(),
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.Column("empi", sa.String(64), nullable=False),
    *scan_columns(),
    sa.Column("city_code", sa.String(6), nullable=False),
    sa.Column("terminal_time", sa.String(14), nullable=False),
    sa.Column("verified_at", sa.DateTime, nullable=False),
    sa.Column("request_id", sa.String(32), nullable=False),
    *chain_columns(),
    sa.Index("ix_usage_institution", "institution_code", "id"),
    sa.Index("ix_usage_chain", "chain_day", "institution_code", "chain_seq"),
    sa.Index("ix_usage_card", "card_id", "id"),
)




patient_links = sa.Table(
    "patient_links",
    metadata,
    sa.Column("institution_code", sa.String(12), primary_key=True),
    sa.Column("local_patient_id", sa.String(64), primary_key=True),
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.UniqueConstraint("institution_code", "card_id", name="uq_link_card"),
)

# purpose: security | protection; state: active | retiring | retired
keys = sa.Table(
    "keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("wrapped", sa.String(64), nullable=False),
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("purpose", "version", name="uq_key_version"),
)

# a binding sent to the social-card side and not yet countersigned (the coordinator's
# defined in-between state; reconciliation completes or drops it)
binding_pending = sa.Table(
    "binding_pending",
    metadata,
    sa.Column("binding_id", sa.String(32), primary_key=True),
    sa.Column("record", sa.String(600), nullable=False),
    sa.Column("ehc_batch", sa.String(40), nullable=False),
    sa.Column("ehc_index", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

# what the data resources layer may read (GET /ehc/v1/export/{source}): pseudonyms only
EXPORTS = {
    "usage": Export(usage_records, ("id", "card_id", "empi", *SCAN, "city_code",
                                    "verified_at"), ("id",), "verified_at"),
    "cards": Export(cards, ("card_id", "empi", "state", "card_type", "temporary", "issuer",
                            "created_at", "updated_at"), ("updated_at", "card_id"),
                    "updated_at",  # the holder's age group on the day read, not their birth
                    (("age_group", "birth_date", lambda b: age_group(b, cst_today())),)),
    **shared_exports(shared),
}
