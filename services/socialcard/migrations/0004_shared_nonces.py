"""The e-SSC side's nonces in their own table, as the EHC side's (healthcard_0004).

Revision ID: socialcard_0004
Revises: socialcard_0003
"""

from alembic import op

from services.common.shared_store import NONCES, add_keyed_table

revision, down_revision = "socialcard_0004", "socialcard_0003"


def upgrade() -> None:
    add_keyed_table(op, NONCES, "nonce:")


def downgrade() -> None:
    op.drop_table(NONCES)
