"""Callers' paced buckets in a table of their own (``shared_paces``: on SQLite its key is
the table), out of ``shared_events``, where moving a bucket moved its row in the expiry
index too.

Revision ID: healthcard_0006
Revises: healthcard_0005
"""

from alembic import op

from services.common.shared_store import PACES, add_keyed_table

revision = "healthcard_0006"
down_revision = "healthcard_0005"


def upgrade() -> None:
    add_keyed_table(op, PACES, "pace:")


def downgrade() -> None:
    op.drop_table(PACES)
