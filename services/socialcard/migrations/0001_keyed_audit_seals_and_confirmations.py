"""Keyed audit chains and sealed heads (received_seals; usage and ledger chains
re-linked under the chain key), and the settlement sweep's back-off (confirm_attempts,
next_confirm_at).

The first revision of this history: a store without one (made by release 0.1, which
created its tables itself) gets it applied; a new store is made as it is now and marked
here.

Revision ID: socialcard_0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import context, op

from services.common.cards.audit import rekey_chains
from services.common.cards.seals import received_seals_table

revision = "socialcard_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    received_seals_table(sa.MetaData()).create(op.get_bind())
    with op.batch_alter_table("settlements") as batch:
        batch.add_column(sa.Column("confirm_attempts", sa.SmallInteger, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("next_confirm_at", sa.DateTime))
        batch.create_index("ix_settlements_confirm", ["state", "next_confirm_at"])
    tables = context.config.attributes["metadata"].tables
    key = context.config.attributes["chain_key"]
    bind = op.get_bind()
    rekey_chains(bind, tables["usage_records"], "usage", lambda r: r.institution_code, key)
    rekey_chains(bind, tables["ledger"], "ledger", lambda r: r.settlement_id[:12], key)


def downgrade() -> None:  # the chains stay keyed: release 0.1 reports them as edited
    with op.batch_alter_table("settlements") as batch:
        batch.drop_index("ix_settlements_confirm")
        batch.drop_column("next_confirm_at")
        batch.drop_column("confirm_attempts")
    op.drop_table("received_seals")
