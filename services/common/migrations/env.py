"""Alembic's environment for every system's history: the runner (services.common.db)
hands over the connection, the system's metadata and what a data migration needs.

A system's first revision is the step from release 0.1, which created its tables itself:
a store without a revision gets it applied; a new store is made as it is now and marked
at the head."""

from alembic import context

attributes = context.config.attributes
context.configure(connection=attributes["connection"],
                  target_metadata=attributes["metadata"],
                  render_as_batch=True)  # SQLite changes a table by copying it
with context.begin_transaction():
    context.run_migrations()
