"""The server's start and stop: a step that fails part-way closes what was already started."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from kubegate.server.app import create_app
from tests.fixtures.api import make_settings

pytestmark = pytest.mark.anyio


def _task_names() -> set[str]:
    return {task.get_name() for task in asyncio.all_tasks()}


async def test_a_proxy_port_in_use_fails_the_start_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'kubegate.db'}", tmp_path / "data", proxy_port=port
    )
    app = create_app(settings)
    before = _task_names()
    try:
        with pytest.raises(OSError, match="address already in use"):
            async with app.router.lifespan_context(app):
                pytest.fail("the server started on a port that is taken")
    finally:
        taken.close()
    # The audit writer (started before the listener) was stopped, not left behind.
    assert _task_names() - before == set()
    # And the start can be tried again once the port is free: nothing holds the database.
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'kubegate.db'}", tmp_path / "data", proxy_port=0
    )
    again = create_app(settings)
    async with again.router.lifespan_context(again):
        assert again.state.kubegate.proxy.port != 0
    assert _task_names() - before == set()


async def test_a_clean_stop_leaves_no_task_behind(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'kubegate.db'}", tmp_path / "d")
    app = create_app(settings)
    before = _task_names()
    async with app.router.lifespan_context(app):
        assert "proxy audit" in _task_names()
    assert _task_names() - before == set()


async def test_a_failing_step_of_the_stop_does_not_leave_the_rest_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubegate.server.minter import Minter

    async def broken_close(self: Minter) -> None:  # fault injection: the first close raises
        raise RuntimeError("the minter failed to stop")

    monkeypatch.setattr(Minter, "close", broken_close)
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'kubegate.db'}", tmp_path / "d")
    app = create_app(settings)
    before = _task_names()
    with pytest.raises(RuntimeError, match="the minter failed to stop"):
        async with app.router.lifespan_context(app):
            port = app.state.kubegate.proxy.port
    # Every later step still ran: the proxy no longer listens, and the only task left is
    # the one whose stop was broken.
    with pytest.raises(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
    left = [t for t in asyncio.all_tasks() if t.get_name() not in before]
    assert [t.get_name() for t in left] == ["kube token minter"]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
