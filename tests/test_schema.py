"""One schema, two engines: migrations produce exactly what the code queries."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from mssante.db import Database, SchemaOutOfDate
from mssante.schema import metadata


def test_migrations_build_exactly_the_declared_schema(db):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_upgrade_is_idempotent_and_reports_status(db_url):
    database = Database.open(db_url)
    try:
        before = database.schema_status()
        assert before.current is None and not before.up_to_date
        with pytest.raises(SchemaOutOfDate, match="mssante db upgrade"):
            database.require_current()
        assert database.upgrade().up_to_date
        assert database.upgrade().up_to_date
        database.require_current()
    finally:
        database.dispose()


def test_sqlite_runs_in_wal_mode_with_full_synchronous_commits(tmp_path):
    database = Database.open(f"sqlite:///{tmp_path / 'x.db'}")
    with database.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    database.dispose()
