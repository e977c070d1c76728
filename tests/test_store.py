"""The migration creates exactly the schema the models describe, and the shipped policy file is
the one the package installs."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import inbox_mcp.store.tables  # noqa: F401
from inbox_mcp.store.db import Database

REPO = Path(__file__).resolve().parents[1]


def test_migration_matches_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    assert db.needs_upgrade()
    db.upgrade()
    assert not db.needs_upgrade()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    # The FTS5 virtual table (and its shadow tables) is created by raw DDL, not by a model.
    diff = [d for d in diff if not (d[0] == "remove_table" and d[1].name.startswith("message_fts"))]
    assert diff == [], f"models and migrations differ: {diff}"


def test_head_revision_constant_is_alembics_head(tmp_path: Path) -> None:
    from inbox_mcp.store.db import HEAD_REVISION

    assert Database(f"sqlite:///{tmp_path / 'h.db'}").alembic_head() == HEAD_REVISION


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    db.upgrade()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


def test_shipped_policy_is_the_packaged_default() -> None:
    shipped = (REPO / "policies" / "default.toml").read_text()
    packaged = (REPO / "src" / "inbox_mcp" / "policy" / "default.toml").read_text()
    assert shipped == packaged
