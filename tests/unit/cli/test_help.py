"""Every command answers ``--help`` with what it does and an example."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from kubegate.cli.app import app


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
            if command.invoke_without_command:  # `kubegate server` runs the server itself
                yield (*path, name), command
        else:
            yield (*path, name), command


ALL = list(commands(typer.main.get_command(app)))


def test_the_cli_has_the_commands_the_docs_promise() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {
        "login", "logout", "whoami", "server", "server list", "server use", "cluster list",
        "cluster select", "cluster kube-token", "cluster access list", "cluster access grant",
        "cluster access revoke", "cluster kubeconfig add", "cluster kubeconfig remove",
        "cluster kubeconfig list", "doctor", "agent", "version",
    } <= names  # fmt: skip


@pytest.mark.parametrize("path", [path for path, _ in ALL], ids=" ".join)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
    assert "Example" in result.output, result.output
