"""Shared fixtures: real SQLite files, and PostgreSQL when the suite is given one.

Every storage test takes the ``db`` fixture and runs once per engine. The
PostgreSQL run needs ``MSSANTE_TEST_POSTGRES_URL`` (``.ci/run`` starts a
throwaway cluster and sets it); without it those cases are skipped, with the
reason shown in the summary.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mssante.db import Database

PG_ENV = "MSSANTE_TEST_POSTGRES_URL"
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"PostgreSQL case: set {PG_ENV} to run it (.ci/run does)")
    name = f"mssante_t_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (skipped without MSSANTE_TEST_POSTGRES_URL)."""
    yield from _postgres_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mssante.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated database on each engine."""
    database = Database.open(db_url)
    database.upgrade()
    yield database
    database.dispose()
