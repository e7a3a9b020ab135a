"""Test-suite wiring: fixture plugins and clean shutdown on SIGTERM."""

from __future__ import annotations

import signal
from types import FrameType

import pytest

pytest_plugins = [
    "tests.fixtures.kube",
    "tests.fixtures.postgres",
    "tests.fixtures.browser",
    "tests.fixtures.dex",
]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session: pytest.Session) -> None:
    """SIGTERM (CI cancelling a run) tears fixtures down like Ctrl-C does: no stray processes."""
    signal.signal(signal.SIGTERM, _interrupt)
