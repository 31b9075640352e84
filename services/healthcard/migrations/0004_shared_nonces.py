"""Signed requests' nonces in a table of their own (``shared_nonces``: on SQLite its key
is the table), out of ``shared_events``, whose row cost a claim four B-tree writes.

Revision ID: healthcard_0004
Revises: healthcard_0003
"""

from alembic import op

from services.common.shared_store import NONCES, add_keyed_table

revision = "healthcard_0004"
down_revision = "healthcard_0003"


def upgrade() -> None:
    add_keyed_table(op, NONCES, "nonce:")


def downgrade() -> None:
    op.drop_table(NONCES)
