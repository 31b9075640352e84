"""The callers' generation: one row every registration, disabling or rotation of an
institution, terminal or channel app bumps, so each process caches credentials until
they change (read at most once a second) instead of re-reading each one every second.

Revision ID: healthcard_0003
Revises: healthcard_0002
"""

from alembic import op

from services.common.cards.callers import add_changes_table

revision = "healthcard_0003"
down_revision = "healthcard_0002"


def upgrade() -> None:
    add_changes_table(op)


def downgrade() -> None:
    op.drop_table("caller_changes")
