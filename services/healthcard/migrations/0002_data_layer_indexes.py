"""Indexes the data resources layer reads along: its keyset pages of cards and bindings
(``updated_at``, then the key), without scanning and sorting the tables.

Revision ID: healthcard_0002
Revises: healthcard_0001
"""

from alembic import op

revision = "healthcard_0002"
down_revision = "healthcard_0001"


def upgrade() -> None:
    op.create_index("ix_cards_updated", "cards", ["updated_at", "card_id"])
    op.create_index("ix_binding_updated", "bindings", ["updated_at", "binding_id"])


def downgrade() -> None:
    op.drop_index("ix_binding_updated", "bindings")
    op.drop_index("ix_cards_updated", "cards")
