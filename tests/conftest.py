"""Shared fixtures: real SQLite files, and PostgreSQL when the suite is given one.

Every storage test takes the ``db`` fixture and runs once per engine. The
PostgreSQL run needs ``MSSANTE_TEST_POSTGRES_URL`` (``.ci/run`` starts a
throwaway cluster and sets it); without it those cases are skipped, with the
reason shown in the summary.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mssante.db import Database

from nodes import Node

PG_ENV = "MSSANTE_TEST_POSTGRES_URL"
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def _admin_url() -> str:
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        pytest.skip(f"PostgreSQL case: set {PG_ENV} to run it (.ci/run does)")
    return admin_url


def _postgres_database(template: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database for one test (a copy of ``template``), dropped afterwards."""
    admin_url = _admin_url()
    name = f"mssante_t_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        suffix = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Databases migrated once per session; each test's ``db`` starts as a copy of one.

    Migrating takes longer than copying, and every storage test needs the schema.
    """
    templates: dict[str, str] = {}
    sqlite_file = tmp_path_factory.mktemp("template") / "mssante.db"
    database = Database.open(f"sqlite:///{sqlite_file}")
    database.upgrade()
    database.dispose()
    templates["sqlite"] = str(sqlite_file)
    pg: Iterator[str] | None = None
    if os.environ.get(PG_ENV):
        pg = _postgres_database()
        url = next(pg)
        database = Database.open(url)
        database.upgrade()
        database.dispose()
        templates["postgresql"] = make_url(url).database or ""
    yield templates
    if pg is not None:
        pg.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (skipped without MSSANTE_TEST_POSTGRES_URL)."""
    yield from _postgres_database()


@pytest.fixture
def postgres_databases() -> Iterator[Callable[[], str]]:
    """Make as many fresh PostgreSQL databases as a test needs (several nodes)."""
    made: list[Iterator[str]] = []

    def make() -> str:
        gen = _postgres_database()
        made.append(gen)
        return next(gen)

    yield make
    for gen in made:
        gen.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mssante.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_templates: dict[str, str]
) -> Iterator[Database]:
    """A migrated database on each engine, fresh for each test."""
    if request.param == "sqlite":
        target = tmp_path / "mssante.db"
        shutil.copyfile(migrated_templates["sqlite"], target)
        urls: Iterator[str] = iter([f"sqlite:///{target}"])
    else:
        _admin_url()
        urls = _postgres_database(template=migrated_templates["postgresql"])
    database = Database.open(next(urls))
    yield database
    database.dispose()
    if isinstance(urls, Generator):
        urls.close()


@pytest.fixture
def start_node() -> Iterator[Callable[[Path], Node]]:
    """Start `mssante serve` processes; any still running at teardown is killed."""
    started: list[Node] = []

    def start(data_dir: Path) -> Node:
        node = Node.start(data_dir)
        started.append(node)
        return node

    yield start
    for node in started:
        if node.process.poll() is None:
            node.process.kill()
            node.process.wait(10)
