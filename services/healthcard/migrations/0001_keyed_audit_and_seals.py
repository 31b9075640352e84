"""Keyed audit chains and sealed heads: the other system's seals are kept
(received_seals) and the usage chains are re-linked under the chain key.

The first revision of this history: a store without one (made by release 0.1, which
created its tables itself) gets it applied; a new store is made as it is now and marked
here.

Revision ID: healthcard_0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import context, op

from services.common.cards.audit import rekey_chains
from services.common.cards.seals import received_seals_table

revision = "healthcard_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    received_seals_table(sa.MetaData()).create(op.get_bind())
    usage = context.config.attributes["metadata"].tables["usage_records"]
    rekey_chains(op.get_bind(), usage, "usage", lambda r: r.institution_code,
                 context.config.attributes["chain_key"])


def downgrade() -> None:  # the chains stay keyed: release 0.1 reports them as edited
    op.drop_table("received_seals")
