"""Alembic migrations: the versioned history of :mod:`mssante.schema`."""
