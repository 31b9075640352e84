"""Keyed audit chains and sealed heads: the other system's seals are kept
(received_seals) and the usage chains are re-linked under the chain key. The first
revision of this history (see services/common/migrations/env.py).

Revision ID: healthcard_0001
Revises: (none)
"""

from alembic import context, op

from services.common.cards.seals import upgrade_to_sealed_chains

revision = "healthcard_0001"
down_revision = None


def upgrade() -> None:
    attrs = context.config.attributes
    upgrade_to_sealed_chains(op.get_bind(), attrs["metadata"].tables, attrs["chain_key"],
                             {"usage_records": ("usage", lambda r: r.institution_code)})


def downgrade() -> None:  # the chains stay keyed: release 0.1 reports them as edited
    op.drop_table("received_seals")
