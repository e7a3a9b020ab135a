"""When ``kubegate login --sso`` opens a browser itself."""

from __future__ import annotations

import pytest

from kubegate.cli.login_sso import can_open_browser


@pytest.mark.parametrize(
    ("environ", "platform", "opens"),
    [
        ({"DISPLAY": ":0"}, "linux", True),
        ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
        ({}, "linux", False),  # a server console, a container
        ({"DISPLAY": ":0", "SSH_CONNECTION": "192.0.2.1 5 192.0.2.2 22"}, "linux", False),
        ({"DISPLAY": "localhost:10.0", "SSH_TTY": "/dev/pts/3"}, "linux", False),  # X forwarding
        ({}, "darwin", True),
        ({"SSH_CLIENT": "192.0.2.1 5 22"}, "darwin", False),
        ({}, "win32", True),
    ],
)
def test_a_browser_opens_only_where_the_person_can_see_it(
    environ: dict[str, str], platform: str, opens: bool
) -> None:
    assert can_open_browser(environ, platform) is opens
