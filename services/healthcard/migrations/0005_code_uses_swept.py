"""The dynamic codes' use counts kept only while a code can pass its expiry check (the hot
path now sweeps the rest) and, on SQLite, keyed without a rowid (one page a count, not
two): the table is made again with the counts of codes that could still be presented
(expired less than the longest clock skew allowed ago); PostgreSQL keeps its table and
loses the spent counts.

Revision ID: healthcard_0005
Revises: healthcard_0004
"""

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

from services.common.cst import utc_now
from services.common.settings import Settings
from services.healthcard.tables import code_uses

revision = "healthcard_0005"
down_revision = "healthcard_0004"

# the largest clock skew the settings take: a count younger than that may still matter
LONGEST_SKEW_S = next(m.le for m in Settings.model_fields["clock_skew_s"].metadata
                      if hasattr(m, "le"))


def upgrade() -> None:
    bind = op.get_bind()
    alive = code_uses.c.expires_at >= utc_now() - timedelta(seconds=LONGEST_SKEW_S + 1)
    if bind.dialect.name != "sqlite":
        bind.execute(sa.delete(code_uses).where(sa.not_(alive)))
        return
    fresh = code_uses.to_metadata(sa.MetaData(), name="code_uses_fresh")
    fresh.create(bind)
    bind.execute(sa.insert(fresh).from_select(
        [c.name for c in code_uses.columns], sa.select(code_uses).where(alive)))
    op.drop_table("code_uses")
    op.rename_table("code_uses_fresh", "code_uses")


def downgrade() -> None:
    """Nothing to undo: the table holds the same columns either way."""
