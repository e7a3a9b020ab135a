"""``password_login = false``: both password sign-ins answer a clear 403, and ``GET
/api/v1/info`` tells clients to offer SSO instead; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubegate.server.app import create_app
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, ServerThread, make_settings

OFF = "password sign-in is turned off on this server; sign in with SSO"
SSO = {
    # Never contacted: discovery is read at the first SSO sign-in, not at start.
    "issuer": "https://idp.example.com",
    "client_id": "kubegate",
    "client_secret": "not-used-here",
    "display_name": "Acme SSO",
}


def client_of(database_url: str, data_dir: Path, **overrides: Any) -> Iterator[httpx.Client]:
    settings = make_settings(database_url, data_dir, password_login=False, **overrides)
    with (
        ServerThread(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


@pytest.fixture
def sso_only(database_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    """A server with SSO and password sign-in turned off."""
    yield from client_of(database_url, tmp_path / "data", oidc=SSO)


@pytest.fixture
def no_sign_in(database_url: str, tmp_path: Path) -> Iterator[httpx.Client]:
    """A server with neither SSO nor password sign-in (access keys only)."""
    yield from client_of(database_url, tmp_path / "data")


CREDENTIALS = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}


def test_api_password_login_is_refused_even_with_the_right_password(
    sso_only: httpx.Client,
) -> None:
    refused = sso_only.post("/api/v1/auth/login", json=CREDENTIALS)

    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "forbidden"
    assert error["message"].startswith(OFF)
    assert "kubegate login SERVER --sso" in error["message"]


def test_portal_password_login_is_refused_without_a_session(sso_only: httpx.Client) -> None:
    refused = sso_only.post("/org/login", json=CREDENTIALS)

    assert refused.status_code == 403
    assert refused.json()["error"]["message"].startswith(OFF)
    assert "set-cookie" not in refused.headers


def test_info_offers_sso_and_no_password(sso_only: httpx.Client) -> None:
    info = sso_only.get("/api/v1/info").json()

    assert info["password_login"] is False
    assert info["sso"] == {"display_name": "Acme SSO", "login_path": "/auth/oidc/login"}


def test_without_sso_either_the_refusal_points_to_access_keys(no_sign_in: httpx.Client) -> None:
    refused = no_sign_in.post("/api/v1/auth/login", json=CREDENTIALS)

    assert refused.status_code == 403
    assert "use an access key" in refused.json()["error"]["message"]
    info = no_sign_in.get("/api/v1/info").json()
    assert (info["password_login"], info["sso"]) == (False, None)
