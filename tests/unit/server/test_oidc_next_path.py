"""Where a sign-in may send the browser afterwards: a path on this server, nothing else."""

from __future__ import annotations

import pytest

from kubegate.server.oidc_logins import safe_next_path


@pytest.mark.parametrize(
    "value",
    ["/", "/org/session", "/org/clusters/abc?tab=access#grants", "/device?user_code=BCDF-GHJK"],
)
def test_a_path_on_this_server_is_kept(value: str) -> None:
    assert safe_next_path(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "evil.example.com",
        "//evil.example.com/",
        "///evil.example.com",
        "/\\evil.example.com",
        "/path\\..\\//evil",
        "https://evil.example.com/",
        "javascript:alert(1)",
        "/\tevil",
        "/x\r\nSet-Cookie: a=b",
        "/" + "a" * 600,
    ],
)
def test_anything_else_becomes_the_root(value: str | None) -> None:
    assert safe_next_path(value) == "/"
