"""Indexes the data resources layer reads along: its keyset pages of settlements and
bindings (``updated_at``, then the key), without scanning and sorting the tables.

Revision ID: socialcard_0002
Revises: socialcard_0001
"""

from alembic import op

revision = "socialcard_0002"
down_revision = "socialcard_0001"
INDEXES = {"ix_settlements_updated": ("settlements", ["updated_at", "settlement_id"]),
           "ix_binding_updated": ("bindings", ["updated_at", "binding_id"])}


def upgrade() -> None:
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table)
