"""The test PostgreSQL server is real: transactions commit and roll back."""

from __future__ import annotations

import psycopg
import pytest

pytestmark = pytest.mark.e2e


def test_committed_row_is_read_back_by_another_connection(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as writer:
        with writer.transaction():
            writer.execute("CREATE TABLE grants (id integer PRIMARY KEY, subject text NOT NULL)")
            writer.execute(
                "INSERT INTO grants (id, subject) VALUES (%s, %s)", (1, "alice@example.com")
            )
        assert writer.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    with psycopg.connect(postgres_url) as reader:
        rows = reader.execute("SELECT id, subject FROM grants").fetchall()

    assert rows == [(1, "alice@example.com")]


def test_rolled_back_insert_is_not_there(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE grants (id integer PRIMARY KEY, subject text NOT NULL)")
        with conn.transaction():
            conn.execute("INSERT INTO grants (id, subject) VALUES (1, 'kept')")
        with conn.transaction():
            conn.execute("INSERT INTO grants (id, subject) VALUES (2, 'discarded')")
            raise psycopg.Rollback()

    with psycopg.connect(postgres_url) as reader:
        rows = reader.execute("SELECT id, subject FROM grants ORDER BY id").fetchall()

    assert rows == [(1, "kept")]
