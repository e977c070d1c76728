"""Alembic environment: always run programmatically with a live connection (store/db.py)."""

from alembic import context
from sqlmodel import SQLModel

import inbox_mcp.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `inbox-mcp db upgrade`, which passes a connection")
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
