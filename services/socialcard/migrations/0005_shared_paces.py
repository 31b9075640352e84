"""The e-SSC side's paced buckets in their own table, as the EHC side's (healthcard_0006).

Revision ID: socialcard_0005
Revises: socialcard_0004
"""

from alembic import op

from services.common.shared_store import PACES, add_keyed_table

revision, down_revision = "socialcard_0005", "socialcard_0004"


def upgrade() -> None:
    add_keyed_table(op, PACES, "pace:")


def downgrade() -> None:
    op.drop_table(PACES)
