"""Alembic environment: always runs on the connection the store hands over.

The store opens the transaction (and on PostgreSQL takes an advisory lock)
before calling Alembic, so concurrent executors never migrate twice.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from executor.store.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run migrations through executor.store.database.ensure_schema")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
