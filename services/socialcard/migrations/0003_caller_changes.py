"""The e-SSC side's callers' generation, as the EHC side's (healthcard_0003).

Revision ID: socialcard_0003
Revises: socialcard_0002
"""

from alembic import op

from services.common.cards.callers import add_changes_table

revision, down_revision = "socialcard_0003", "socialcard_0002"


def upgrade() -> None:
    add_changes_table(op)


def downgrade() -> None:
    op.drop_table("caller_changes")
