"""The CLI's tests run a real server (``api``) on SQLite only: the CLI speaks HTTP, and
what the database does behind it is the API tests' to cover on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'kubegate.db'}"
