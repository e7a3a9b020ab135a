"""What the Kubernetes API proxy refuses, and how, before anything reaches a cluster.

The app runs on SQLite and PostgreSQL with its proxy on a listener of its own; no agent is
connected, so a request that passes every check ends at "cluster offline" (503). Every
refusal is a Kubernetes ``Status`` object, which is what kubectl prints.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import Engine, create_engine, update
from sqlalchemy.orm import Session

from kubegate.storage.models import KubeToken
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    NO_ACCESS,
    add_cluster,
    add_user,
    audit_events,
    grant,
    grants_path,
    org_id_of,
    token_path,
)
from tests.fixtures.api import Api, make_settings, serving
from tests.fixtures.gateway import wait_for

PODS = "/api/v1/namespaces/default/pods"


def mint(api: Api, cluster_id: str, token: str) -> str:
    response = api.post(token_path(cluster_id), token)
    assert response.status_code == 200, response.text
    value: str = response.json()["token"]
    return value


def proxy_get(
    api: Api, path: str, token: str | None, headers: dict[str, str] | None = None
) -> httpx.Response:
    all_headers = {"Authorization": f"Bearer {token}"} if token else {}
    all_headers.update(headers or {})
    with httpx.Client(base_url=api.proxy_url, timeout=30) as client:
        return client.get(path, headers=all_headers)


def status_of(response: httpx.Response) -> dict[str, Any]:
    """The Kubernetes Status body, checked for the shape kubectl decodes."""
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure" and body["code"] == response.status_code
    return body


@pytest.fixture
def granted(api: Api, member: tuple[str, str]) -> tuple[str, str]:
    """A cluster the member holds a view grant on, and a kube token for it."""
    cluster_id = add_cluster(api)
    grant(api, cluster_id, member[0])
    return cluster_id, mint(api, cluster_id, member[1])


def test_a_request_without_a_token_is_401_unauthorized(api: Api, granted: tuple[str, str]) -> None:
    cluster_id, _ = granted
    response = proxy_get(api, f"/clusters/{cluster_id}{PODS}", None)
    assert response.status_code == 401
    assert status_of(response)["reason"] == "Unauthorized"


@pytest.mark.parametrize("bad", ["kg_kube_not-a-real-token", "x", "Basic abc"])
def test_an_unknown_or_malformed_token_is_401(api: Api, granted: tuple[str, str], bad: str) -> None:
    cluster_id, _ = granted
    response = proxy_get(api, f"/clusters/{cluster_id}{PODS}", bad)
    assert response.status_code == 401
    assert status_of(response)["reason"] == "Unauthorized"


def test_a_valid_token_reaches_the_offline_check_naming_the_cluster(
    api: Api, granted: tuple[str, str]
) -> None:
    cluster_id, token = granted
    response = proxy_get(api, f"/clusters/{cluster_id}{PODS}", token)
    assert response.status_code == 503
    body = status_of(response)
    assert body["reason"] == "ServiceUnavailable"
    assert "cluster prod is offline" in body["message"]


def test_a_token_for_cluster_a_is_refused_on_cluster_b(api: Api, member: tuple[str, str]) -> None:
    cluster_a = add_cluster(api, "cluster-a")
    cluster_b = add_cluster(api, "cluster-b")
    grant(api, cluster_a, member[0])
    grant(api, cluster_b, member[0])
    token_a = mint(api, cluster_a, member[1])
    response = proxy_get(api, f"/clusters/{cluster_b}{PODS}", token_a)
    assert response.status_code == 401
    assert "another cluster" in status_of(response)["message"]


def test_an_expired_token_is_401_and_says_so(
    api: Api, granted: tuple[str, str], db: Engine
) -> None:
    cluster_id, token = granted
    with Session(db) as session, session.begin():
        session.execute(
            update(KubeToken).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    response = proxy_get(api, f"/clusters/{cluster_id}{PODS}", token)
    assert response.status_code == 401
    assert "expired" in status_of(response)["message"]


def test_revoke_all_makes_an_existing_token_fail_at_once(
    api: Api, granted: tuple[str, str], member: tuple[str, str]
) -> None:
    cluster_id, token = granted
    assert proxy_get(api, f"/clusters/{cluster_id}{PODS}", token).status_code == 503
    assert api.post(f"/api/v1/clusters/{cluster_id}/access/revoke-all").status_code == 200
    grant(api, cluster_id, member[0])  # granted again: the old token stays dead
    response = proxy_get(api, f"/clusters/{cluster_id}{PODS}", token)
    assert response.status_code == 401
    assert "revoked" in status_of(response)["message"]


def test_deleting_the_last_grant_makes_an_existing_token_forbidden(
    api: Api, granted: tuple[str, str]
) -> None:
    cluster_id, token = granted
    assert proxy_get(api, f"/clusters/{cluster_id}{PODS}", token).status_code == 503
    grants = api.get(grants_path(cluster_id)).json()["items"]
    for item in grants:
        assert api.delete(f"{grants_path(cluster_id)}/{item['id']}").status_code == 204
    response = proxy_get(api, f"/clusters/{cluster_id}{PODS}", token)
    assert response.status_code == 403
    body = status_of(response)
    assert body["reason"] == "Forbidden" and body["message"] == NO_ACCESS


def test_deactivating_the_member_makes_their_token_fail(
    api: Api, granted: tuple[str, str], member: tuple[str, str]
) -> None:
    cluster_id, token = granted
    assert proxy_get(api, f"/clusters/{cluster_id}{PODS}", token).status_code == 503
    response = api.patch(f"/api/v1/users/{member[0]}", json={"is_active": False})
    assert response.status_code == 200, response.text
    assert proxy_get(api, f"/clusters/{cluster_id}{PODS}", token).status_code == 401


@pytest.mark.parametrize("who", ["the member", "an admin"])
def test_signing_the_member_out_everywhere_makes_their_cached_token_fail(
    api: Api, granted: tuple[str, str], member: tuple[str, str], who: str
) -> None:
    cluster_id, token = granted
    # Used once, so the proxy answers it from memory from now on.
    assert proxy_get(api, f"/clusters/{cluster_id}{PODS}", token).status_code == 503
    if who == "the member":
        response = api.post("/api/v1/auth/logout-everywhere", member[1])
    else:
        response = api.post(f"/api/v1/users/{member[0]}/sessions/revoke")
    assert response.status_code == 200, response.text
    assert proxy_get(api, f"/clusters/{cluster_id}{PODS}", token).status_code == 401


def test_an_api_token_is_not_a_kube_token(api: Api, granted: tuple[str, str]) -> None:
    cluster_id, _ = granted
    response = proxy_get(api, f"/clusters/{cluster_id}{PODS}", api.admin_token)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/namespaces/default/pods/../../../secrets",
        "/api/v1/namespaces/default/pods/%2e%2e/x",
        "/api/v1/namespaces/default%2Fpods",
        "/api/v1//namespaces",
        "/api/v1/namespaces/a%5Cb",
    ],
)
def test_encoded_slashes_and_dot_segments_are_refused_with_400(
    api: Api, granted: tuple[str, str], path: str
) -> None:
    cluster_id, token = granted
    response = raw_request(api, f"GET /clusters/{cluster_id}{path} HTTP/1.1", token)
    assert response.startswith(b"HTTP/1.1 400 "), response[:200]
    assert b'"reason":"BadRequest"' in response


@pytest.mark.parametrize("path", ["/", "/api/v1/pods", "/clusters/not-an-id/api", "/clusters/"])
def test_paths_outside_a_cluster_are_404(api: Api, granted: tuple[str, str], path: str) -> None:
    _, token = granted
    response = proxy_get(api, path, token)
    assert response.status_code == 404
    assert status_of(response)["reason"] == "NotFound"


def test_oversized_headers_are_refused_with_431(api: Api, granted: tuple[str, str]) -> None:
    cluster_id, token = granted
    huge = "x" * (70 * 1024)
    response = raw_request(
        api, f"GET /clusters/{cluster_id}{PODS} HTTP/1.1", token, extra=f"X-Big: {huge}\r\n"
    )
    assert response.startswith(b"HTTP/1.1 431 "), response[:200]


def test_an_oversized_request_line_is_refused_with_431(api: Api, granted: tuple[str, str]) -> None:
    cluster_id, token = granted
    response = raw_request(
        api, f"GET /clusters/{cluster_id}{PODS}?q={'a' * 70 * 1024} HTTP/1.1", token
    )
    assert response.startswith(b"HTTP/1.1 431 "), response[:200]


def test_refusals_are_audited_with_who_and_what(
    api: Api, granted: tuple[str, str], db: Engine, member: tuple[str, str]
) -> None:
    cluster_id, token = granted
    proxy_get(api, f"/clusters/{cluster_id}{PODS}", token)
    events = wait_for_audit(api, db, cluster_id)
    event = events[-1]
    assert event.actor_user_id == member[0]
    assert event.result == "failure"
    assert event.detail["status"] == 503
    assert event.detail["verb"] == "list" and event.detail["resource"] == "pods"
    assert event.detail["namespace"] == "default"
    assert token not in json.dumps(event.detail)


def wait_for_audit(api: Api, db: Engine, cluster_id: str) -> list[Any]:
    def found() -> list[Any]:
        return [e for e in audit_events(db, "kube.request") if e.cluster_id == cluster_id]

    return wait_for(found, timeout=10, what="the proxy's audit event")


def raw_request(api: Api, request_line: str, token: str, extra: str = "") -> bytes:
    """A hand-written request (httpx would normalise the attack away); answers the reply."""
    url = urlsplit(api.proxy_url)
    assert url.hostname and url.port
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            f"{request_line}\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{extra}"
            "Connection: close\r\n\r\n".encode()
        )
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def test_every_proxy_path_is_404_when_the_gateway_is_disabled(gateway_off: Api) -> None:
    response = proxy_get(gateway_off, f"/clusters/{'0' * 32}{PODS}", "kg_kube_anything")
    assert response.status_code == 404
    assert status_of(response)["reason"] == "NotFound"


def test_the_rate_limit_answers_429_with_an_integer_retry_after(
    database_url: str, tmp_path: Any
) -> None:
    settings = make_settings(
        database_url, tmp_path / "data", proxy_requests_per_second=0.01, proxy_request_burst=2
    )
    with serving(settings) as api:
        engine = create_engine(database_url.replace("+aiosqlite", ""))
        try:
            user_id = add_user(engine, org_id_of(api), MEMBER_EMAIL)
        finally:
            engine.dispose()
        member_token = api.login(MEMBER_EMAIL, MEMBER_PASSWORD)
        cluster_id = add_cluster(api)
        grant(api, cluster_id, user_id)
        token = mint(api, cluster_id, member_token)
        answers = [proxy_get(api, f"/clusters/{cluster_id}{PODS}", token) for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 429]
    limited = answers[2]
    assert int(limited.headers["retry-after"]) >= 1
    body = status_of(limited)
    assert body["reason"] == "TooManyRequests"
    assert body["details"]["retryAfterSeconds"] == int(limited.headers["retry-after"])
