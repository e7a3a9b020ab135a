"""What the CLI tells a person to run when a login has ended: the way they logged in."""

from __future__ import annotations

import pytest

from kubegate.cli.config_store import Credential, Login, Trust, login_command


@pytest.mark.parametrize(
    ("kind", "command"),
    [
        ("password", "kubegate login https://kg.example.com:8443"),
        ("token", "kubegate login https://kg.example.com:8443"),
        ("sso", "kubegate login https://kg.example.com:8443 --sso"),
        ("access_key", "kubegate login https://kg.example.com:8443 --access-key"),
    ],
)
def test_the_login_command_repeats_how_the_login_was_made(kind: str, command: str) -> None:
    login = Login("https://kg.example.com:8443", Trust(), Credential(kind=kind, token="t"))

    assert login_command(login) == command
