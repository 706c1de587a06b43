"""Engines, transactions and schema versions for SQLite and PostgreSQL.

SQLite is the embedded default: WAL journal, ``synchronous=FULL`` (a commit is
on disk when it returns), foreign keys on, and write transactions that take
the write lock up front (``BEGIN IMMEDIATE``) so two writers never deadlock
upgrading a read lock. PostgreSQL is the multi-node engine; the same Core
statements run on both.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from mssante.errors import OperatorError

T = TypeVar("T")
#: PostgreSQL SQLSTATEs of transactions aborted only because of concurrency.
_RETRYABLE = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaOutOfDate(OperatorError):
    """The database is older (or newer) than this code's schema."""


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


class Database:
    """One engine and the three ways to use it: write, read, migrate."""

    def __init__(self, engine: Engine, busy_timeout_ms: int = 10000) -> None:
        self.engine = engine
        #: SQLite has one writer at a time. Writers of this process queue on this
        #: lock instead of in SQLite's busy handler, which sleeps 1, 2, 5, 10… ms
        #: between tries (SMTP acceptance at 20 sessions: p99 165 → 62 ms).
        #: (Re-entrant: a nested write would fail in SQLite anyway, not hang here.)
        self._writer = threading.RLock() if engine.dialect.name == "sqlite" else None
        self._writer_timeout = busy_timeout_ms / 1000

    @classmethod
    def open(
        cls,
        url: str,
        *,
        password: str | None = None,
        busy_timeout_ms: int = 10000,
        pool_size: int = 5,
    ) -> Database:
        parsed = make_url(url)
        if password is not None:
            parsed = parsed.set(password=password)
        if parsed.get_backend_name() == "sqlite":
            engine = create_engine(parsed)
            _configure_sqlite(engine, busy_timeout_ms)
            return cls(engine, busy_timeout_ms)
        engine = create_engine(
            parsed, pool_size=pool_size, pool_pre_ping=True, max_overflow=pool_size
        )
        # Bulk inserts as multi-row INSERTs, not one pipelined statement per row.
        engine.dialect.use_insertmanyvalues_wo_returning = True
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on error."""
        with self._write_turn(), self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        """This process's turn to write (SQLite), given up after the busy timeout."""
        if self._writer is None:
            yield
            return
        if not self._writer.acquire(timeout=self._writer_timeout):
            raise TimeoutError("database is locked: another write transaction is too long")
        try:
            yield
        finally:
            self._writer.release()

    def run_transaction(self, work: Callable[[Connection], T], *, attempts: int = 3) -> T:
        """``work`` in a write transaction, run again when PostgreSQL aborted it as a
        deadlock victim or a serialization failure (both are safe to retry whole)."""
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction() as conn:
                    return work(conn)
            except OperationalError as exc:
                code = getattr(exc.orig, "sqlstate", None)
                if code not in _RETRYABLE or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot on both engines)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    # ------------------------------------------------------------------ schema

    def _alembic(self, conn: Connection) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        return cfg

    def schema_status(self) -> SchemaStatus:
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        assert head is not None
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        return SchemaStatus(current=current, head=head)

    def upgrade(self) -> SchemaStatus:
        """Migrate to the newest schema (idempotent)."""
        with self.engine.connect() as conn:
            command.upgrade(self._alembic(conn), "head")
            conn.commit()
        return self.schema_status()

    def require_current(self) -> None:
        status = self.schema_status()
        if not status.up_to_date:
            raise SchemaOutOfDate(
                f"database schema is at {status.current or 'nothing'}, this version needs "
                f"{status.head}: run `mssante db upgrade --data-dir DIR` first"
            )

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN itself.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
