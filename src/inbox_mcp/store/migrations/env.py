"""Alembic environment: always run programmatically with a live connection (store/db.py)."""

from alembic import context
from sqlmodel import SQLModel

import inbox_mcp.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `inbox-mcp db upgrade`, which passes a connection")


def _include_name(name, type_, parent_names):  # type: ignore[no-untyped-def]
    # The FTS5 index and its shadow tables are raw DDL, invisible to the models.
    return not (type_ == "table" and name and name.startswith("message_fts"))


context.configure(
    connection=connection,
    include_name=_include_name,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
