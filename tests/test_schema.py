"""One schema, two engines: migrations produce exactly what the code queries."""

import threading

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


def test_sqlite_writers_of_one_process_take_turns(tmp_path):
    """Many threads writing at once all commit (they queue in-process, not in SQLite's
    busy handler); a writer kept waiting past the busy timeout gets an error, not a hang."""
    database = Database.open(f"sqlite:///{tmp_path / 'x.db'}", busy_timeout_ms=300)
    with database.transaction() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(20):
                with database.transaction() as conn:
                    conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n * 100 + i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with database.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 160

    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with database.transaction():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(TimeoutError, match="database is locked"), database.transaction():
            pass
    finally:
        release.set()
        holder.join()
    database.dispose()
