"""Keyed audit chains and sealed heads (received_seals; usage and ledger chains
re-linked under the chain key), and the settlement sweep's back-off (confirm_attempts,
next_confirm_at). The first revision of this history (see
services/common/migrations/env.py).

Revision ID: socialcard_0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import context, op

from services.common.cards.seals import upgrade_to_sealed_chains

revision = "socialcard_0001"
down_revision = None


def upgrade() -> None:
    with op.batch_alter_table("settlements") as batch:
        batch.add_column(sa.Column("confirm_attempts", sa.SmallInteger, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("next_confirm_at", sa.DateTime))
        batch.create_index("ix_settlements_confirm", ["state", "next_confirm_at"])
    attrs = context.config.attributes
    upgrade_to_sealed_chains(op.get_bind(), attrs["metadata"].tables, attrs["chain_key"],
                             {"usage_records": ("usage", lambda r: r.institution_code),
                              "ledger": ("ledger", lambda r: r.settlement_id[:12])})


def downgrade() -> None:  # the chains stay keyed: release 0.1 reports them as edited
    with op.batch_alter_table("settlements") as batch:
        batch.drop_index("ix_settlements_confirm")
        batch.drop_column("next_confirm_at")
        batch.drop_column("confirm_attempts")
    op.drop_table("received_seals")
