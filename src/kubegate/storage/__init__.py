"""Persistence: SQLAlchemy 2 (async) models, engine and Alembic migrations.

SQLite (a file in the data dir) is the embedded default; PostgreSQL is the production store.
"""
