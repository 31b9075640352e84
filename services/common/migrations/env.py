"""Alembic's environment for every system's history: the runner (services.common.db)
hands over the connection, the system's metadata and what a data migration needs."""

from alembic import context

attributes = context.config.attributes
context.configure(connection=attributes["connection"],
                  target_metadata=attributes["metadata"],
                  render_as_batch=True)  # SQLite changes a table by copying it
with context.begin_transaction():
    context.run_migrations()
