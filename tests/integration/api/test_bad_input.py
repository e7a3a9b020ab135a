"""Bad input and stale credentials: each gets a clear 4xx naming the problem, and writes nothing.

"Nothing" is checked through the API itself: the clusters, the members and the audit log are
the same before and after. (A refused *admin action*, such as an invalid cluster name, is
itself audited as a failure; that one event is expected.)
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, update

from kubegate.auth.hashing import secret_hash
from kubegate.storage.models import ApiToken
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api

CLUSTERS = "/api/v1/clusters"
USERS = "/api/v1/users"
VALID_BODY: dict[str, dict[str, Any]] = {
    CLUSTERS: {"name": "prod"},
    USERS: {"email": "dev@example.com", "display_name": "Dev"},
}
TEN_MIB = 10 * 1024 * 1024
endpoints = pytest.mark.parametrize("path", [CLUSTERS, USERS], ids=["clusters", "users"])


def state(api: Api) -> dict[str, Any]:
    """Everything a bad request could have written, read through the API."""
    return {
        path: api.get(path, params={"limit": 200}).json()["items"]
        for path in (CLUSTERS, USERS, "/api/v1/audit")
    }


def post_bytes(api: Api, path: str, content: bytes | Iterator[bytes]) -> httpx.Response:
    """POST raw bytes as JSON with the admin's token (``Api.post`` only sends JSON values)."""
    headers = {**api.auth(api.admin_token), "content-type": "application/json"}
    return api.client.post(path, content=content, headers=headers)


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error document of ``response``, after checking its status."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    return body


@endpoints
def test_malformed_json_is_refused_as_invalid_json(api: Api, path: str) -> None:
    before = state(api)
    response = post_bytes(api, path, b'{"name": "prod"')
    assert error(response, 400) == {
        "code": "invalid_json",
        "message": "the request body is not valid JSON; send a JSON object",
        "details": {},
    }
    assert state(api) == before


@endpoints
def test_a_json_value_that_is_not_an_object_is_refused(api: Api, path: str) -> None:
    before = state(api)
    response = api.post(path, json=["prod"])
    problem = error(response, 422)
    assert problem["details"]["fields"][0]["field"] == "body"
    assert "valid dictionary or object" in problem["message"]
    assert state(api) == before


@endpoints
def test_an_unknown_field_is_named_and_refused(api: Api, path: str) -> None:
    before = state(api)
    response = api.post(path, json={**VALID_BODY[path], "is_admin": True})
    problem = error(response, 422)
    assert problem["message"] == "invalid request: is_admin: unknown field; remove it"
    assert problem["details"]["fields"] == [
        {"field": "is_admin", "message": "unknown field; remove it"}
    ]
    assert state(api) == before


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (CLUSTERS, {"name": 42}, "name"),
        (USERS, {"email": ["dev@example.com"], "display_name": "Dev"}, "email"),
        (USERS, {"email": "dev@example.com", "display_name": "Dev", "role": "root"}, "role"),
    ],
    ids=["cluster-name-number", "user-email-list", "user-role-unknown"],
)
def test_a_wrong_type_is_named_and_refused(
    api: Api, path: str, body: dict[str, Any], field: str
) -> None:
    before = state(api)
    problem = error(api.post(path, json=body), 422)
    assert problem["message"].startswith(f"invalid request: {field}: ")
    assert [f["field"] for f in problem["details"]["fields"]] == [field]
    assert state(api) == before


def test_a_string_for_a_boolean_is_refused_not_guessed(api: Api) -> None:
    user_id = api.post(USERS, json=VALID_BODY[USERS]).json()["id"]
    before = state(api)
    problem = error(api.patch(f"{USERS}/{user_id}", json={"is_active": "no"}), 422)
    assert problem["message"] == "invalid request: is_active: Input should be a valid boolean"
    assert state(api) == before


@endpoints
def test_a_10_mib_body_with_content_length_is_refused_with_413(api: Api, path: str) -> None:
    before = state(api)
    body = json.dumps({**VALID_BODY[path], "padding": "x" * TEN_MIB}).encode()
    response = post_bytes(api, path, body)
    problem = error(response, 413)
    assert problem["code"] == "payload_too_large"
    assert f"larger than the limit of {api.settings.max_body_bytes} bytes" in problem["message"]
    assert state(api) == before


@endpoints
def test_a_10_mib_chunked_body_without_content_length_is_refused_with_413(
    api: Api, path: str
) -> None:
    before = state(api)
    body = json.dumps({**VALID_BODY[path], "padding": "x" * TEN_MIB}).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = post_bytes(api, path, chunks())
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    assert error(response, 413)["code"] == "payload_too_large"
    assert state(api) == before


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("Prod_EU", "must consist of lower case letters, digits and '-'"),
        ("-prod", "start and end with a letter or digit"),
        ("a" * 64, "at most 63 characters"),
    ],
    ids=["underscore-and-capitals", "leading-dash", "64-chars"],
)
def test_an_invalid_cluster_name_is_refused_naming_the_rule(
    api: Api, name: str, problem: str
) -> None:
    before = state(api)
    refused = error(api.post(CLUSTERS, json={"name": name}), 422)
    assert problem in refused["message"] and "name" in refused["message"]
    after = state(api)
    assert after[CLUSTERS] == before[CLUSTERS] and after[USERS] == before[USERS]
    new_events = after["/api/v1/audit"][
        : len(after["/api/v1/audit"]) - len(before["/api/v1/audit"])
    ]
    assert all(e["result"] == "failure" for e in new_events)  # refusals are audited, only that


@endpoints
def test_a_logged_out_token_is_refused_and_writes_nothing(api: Api, path: str) -> None:
    token = api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert api.post("/api/v1/auth/logout", token).status_code == 204
    before = state(api)
    problem = error(api.post(path, token, json=VALID_BODY[path]), 401)
    assert problem["message"] == "this API token was ended (signed out or revoked); log in again"
    assert state(api) == before


@endpoints
def test_an_expired_token_is_refused_and_writes_nothing(
    api: Api, path: str, database_url: str
) -> None:
    token = api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    engine = create_engine(database_url.replace("+aiosqlite", ""))
    try:
        with engine.begin() as conn:
            conn.execute(
                update(ApiToken)
                .where(ApiToken.token_hash == secret_hash(token))
                .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            )
    finally:
        engine.dispose()
    before = state(api)
    problem = error(api.post(path, token, json=VALID_BODY[path]), 401)
    assert problem["message"].startswith("this API token expired at ")
    assert problem["message"].endswith("; log in again")
    assert state(api) == before


def test_a_method_the_path_does_not_have_gets_405_naming_the_allowed_ones(
    api: Api, request: pytest.FixtureRequest
) -> None:
    before = state(api)
    response = api.client.put(USERS, headers=api.auth(api.admin_token), json={})
    problem = error(response, 405)
    assert problem["message"] == f"PUT is not allowed on {USERS}"
    assert state(api) == before
    allowed = response.headers.get("allow", "").replace(" ", "").split(",")
    assert sorted(allowed) == ["GET", "POST"]


# A cursor that decodes but that no server issued: its time has no zone.
FOREIGN_CURSOR = base64.urlsafe_b64encode(b'["2025-01-01T00:00:00", "x"]').decode().rstrip("=")


@pytest.mark.parametrize("path", [USERS, "/api/v1/audit", CLUSTERS])
def test_a_cursor_this_server_never_issued_is_a_400(api: Api, path: str) -> None:
    problem = error(api.get(path, params={"cursor": FOREIGN_CURSOR}), 400)
    assert problem["details"] == {"field": "cursor"}
    assert "pass next_cursor from the previous page" in problem["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/auth/login", {"email": "a\x00@example.com", "password": "x"}),
        ("POST", "/org/login", {"email": "a\x00@example.com", "password": "x"}),
        ("GET", f"{CLUSTERS}/a%00b", None),
        ("DELETE", f"{CLUSTERS}/{'a' * 70}", None),
        ("PATCH", f"{USERS}/a%00b", {"role": "admin"}),
        ("GET", "/api/v1/audit?actor=a%00b", None),
    ],
    ids=[
        "login-email-nul",
        "portal-login-email-nul",
        "cluster-id-nul",
        "cluster-id-70-chars",
        "user-id-nul",
        "actor-nul",
    ],
)
def test_text_the_database_cannot_store_is_refused_not_a_503(
    api: Api,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    database_url: str,
    request: pytest.FixtureRequest,
) -> None:
    """PostgreSQL refuses NUL in text and over-long VARCHARs; that is bad input, not an outage."""
    before = state(api)
    response = api.client.request(method, path, json=body, headers=api.auth(api.admin_token))
    assert 400 <= response.status_code < 500, response.text
    after = state(api)
    assert after[CLUSTERS] == before[CLUSTERS] and after[USERS] == before[USERS]
