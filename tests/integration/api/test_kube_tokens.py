"""Minting kube tokens (``POST /api/v1/clusters/{id}/k8s-token``) on SQLite and PostgreSQL.

Tokens are minted as soon as a grant exists: these tests run without an agent, so every
grant here is ``cluster_offline``, and minting still works (kubectl would get Forbidden from
Kubernetes until the grant is applied; that is the proxy's tests' business).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from kubegate.storage.models import AuditEvent, KubeToken, new_id
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    NO_ACCESS,
    add_cluster,
    add_other_org,
    add_user,
    audit_events,
    grant,
    granted_member,
    kube_token_rows,
    me,
    org_id_of,
    sha256,
    token_path,
)
from tests.fixtures.api import Api


def parse_time(text: str) -> dt.datetime:
    """An RFC 3339 UTC time as the API writes it (``…Z``)."""
    assert text.endswith("Z"), text
    return dt.datetime.fromisoformat(text.removesuffix("Z") + "+00:00")


# --- minting -----------------------------------------------------------------------------


def test_mint_answers_a_token_expiring_after_the_configured_lifetime(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id = granted_member(api, member)
    before = dt.datetime.now(dt.UTC)
    response = api.post(token_path(cluster_id), member[1])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"].startswith("kg_kube_") and len(body["token"]) > 40
    expires = parse_time(body["expires_at"])
    assert expires.microsecond == 0
    ttl = api.settings.kube_token_ttl_seconds
    assert before + dt.timedelta(seconds=ttl - 2) <= expires
    assert expires <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=ttl)
    assert body["cluster_id"] == cluster_id
    # The test app's proxy listens on a free port (proxy_port 0): the URL names that one.
    assert re.fullmatch(rf"http://127\.0\.0\.1:[1-9][0-9]*/clusters/{cluster_id}", body["server"])
    assert response.headers["cache-control"] == "no-store"


def test_only_the_tokens_sha256_is_stored_with_user_cluster_org_and_epoch(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = granted_member(api, member)
    body = api.post(token_path(cluster_id), member[1]).json()
    [row] = kube_token_rows(db, cluster_id=cluster_id)
    assert row.token_hash == sha256(body["token"])
    assert (row.user_id, row.org_id, row.token_epoch) == (member[0], org_id_of(api), 0)
    assert (row.access_key_id, row.scope) == (None, None)
    assert row.expires_at == parse_time(body["expires_at"])
    with db.connect() as conn:
        stored = conn.exec_driver_sql("SELECT * FROM kube_tokens").all()
    assert body["token"] not in json.dumps([list(map(str, r)) for r in stored])


def test_mint_is_audited_without_the_token(api: Api, member: tuple[str, str], db: Engine) -> None:
    cluster_id = granted_member(api, member)
    body = api.post(token_path(cluster_id), member[1]).json()
    [row] = kube_token_rows(db, cluster_id=cluster_id)
    [event] = audit_events(db, "kube_token.mint")
    assert (event.result, event.actor_email, event.cluster_id) == (
        "success",
        MEMBER_EMAIL,
        cluster_id,
    )
    assert (event.target_type, event.target_id) == ("kube_token", row.id)
    assert event.detail == {
        "via": "k8s-token",
        "expires_at": body["expires_at"],
        "token_epoch": 0,
    }
    with Session(db) as session:
        events = session.scalars(select(AuditEvent)).all()
    dumped = json.dumps([(e.target_id, e.detail) for e in events])
    assert body["token"] not in dumped and sha256(body["token"]) not in dumped


def test_an_admin_with_a_grant_mints_like_anyone(api: Api, db: Engine) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, me(api), "cluster-admin")
    response = api.post(token_path(cluster_id))
    assert response.status_code == 200, response.text
    assert len(kube_token_rows(db, cluster_id=cluster_id)) == 1


def test_the_body_may_be_omitted_empty_or_an_empty_object(
    api: Api, member: tuple[str, str]
) -> None:
    cluster_id = granted_member(api, member)
    headers = api.auth(member[1])
    bodies: list[dict[str, Any]] = [{}, {"content": b""}, {"json": {}}]
    for kwargs in bodies:
        response = api.client.post(token_path(cluster_id), headers=headers, **kwargs)
        assert response.status_code == 200, (kwargs, response.text)


def test_ttl_seconds_shortens_the_lifetime(api: Api, member: tuple[str, str]) -> None:
    cluster_id = granted_member(api, member)
    before = dt.datetime.now(dt.UTC)
    response = api.post(token_path(cluster_id), member[1], json={"ttl_seconds": 120})
    assert response.status_code == 200, response.text
    expires = parse_time(response.json()["expires_at"])
    assert before + dt.timedelta(seconds=118) <= expires
    assert expires <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)


@pytest.mark.parametrize(
    "body",
    [{"ttl_seconds": 59}, {"ttl_seconds": 901}, {"ttl_seconds": "soon"}, {"ttl": 120}],
    ids=["too-short", "longer-than-configured", "not-a-number", "unknown-field"],
)
def test_out_of_range_ttl_seconds_is_refused_and_mints_nothing(
    api: Api, member: tuple[str, str], db: Engine, body: dict[str, Any]
) -> None:
    cluster_id = granted_member(api, member)
    response = api.post(token_path(cluster_id), member[1], json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_failed"
    assert next(iter(body)) in error["message"]
    assert kube_token_rows(db, cluster_id=cluster_id) == []


def test_longer_than_configured_names_the_allowed_range(api: Api, member: tuple[str, str]) -> None:
    cluster_id = granted_member(api, member)
    response = api.post(token_path(cluster_id), member[1], json={"ttl_seconds": 901})
    assert response.json()["error"] == {
        "code": "validation_failed",
        "message": "ttl_seconds must be between 60 and 900 (this server's kube token "
        "lifetime); got 901",
        "details": {"field": "ttl_seconds"},
    }


def test_tokens_carry_the_clusters_current_epoch(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = granted_member(api, member)
    first = api.post(token_path(cluster_id), member[1]).json()
    assert api.post(f"/api/v1/clusters/{cluster_id}/access/revoke-all").status_code == 200
    # Revoke-all deleted the grant too: no token until access is granted again.
    refused = api.post(token_path(cluster_id), member[1])
    assert refused.status_code == 403
    grant(api, cluster_id, member[0])
    second = api.post(token_path(cluster_id), member[1]).json()
    epochs = {r.token_hash: r.token_epoch for r in kube_token_rows(db, cluster_id=cluster_id)}
    assert epochs == {sha256(first["token"]): 0, sha256(second["token"]): 1}


def test_long_expired_tokens_of_the_minting_user_are_cleaned_up(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = granted_member(api, member)
    now = dt.datetime.now(dt.UTC)
    with Session(db) as session, session.begin():
        for user_id, expired in [
            (member[0], dt.timedelta(hours=2)),  # long expired: goes
            (member[0], dt.timedelta(minutes=5)),  # just expired: stays a while
            (me(api), dt.timedelta(hours=2)),  # someone else's: not this mint's business
        ]:
            session.add(
                KubeToken(
                    token_hash=sha256(new_id()),
                    user_id=user_id,
                    cluster_id=cluster_id,
                    org_id=org_id_of(api),
                    token_epoch=0,
                    created_at=now - expired - dt.timedelta(minutes=15),
                    expires_at=now - expired,
                )
            )
    api.post(token_path(cluster_id), member[1])
    rows = kube_token_rows(db, cluster_id=cluster_id)
    left = sorted((r.user_id == member[0], r.expires_at > now) for r in rows)
    assert left == [(False, False), (True, False), (True, True)]


def test_deleting_the_cluster_deletes_its_tokens(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = granted_member(api, member)
    api.post(token_path(cluster_id), member[1])
    assert api.delete(f"/api/v1/clusters/{cluster_id}").status_code == 204
    assert kube_token_rows(db, cluster_id=cluster_id) == []


# --- refusals ----------------------------------------------------------------------------


def test_without_a_grant_a_member_is_refused_with_the_exact_message(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    other = add_cluster(api, "other")
    grant(api, other, member[0])  # a grant elsewhere does not count
    response = api.post(token_path(cluster_id), member[1])
    assert response.status_code == 403, response.text
    assert response.json()["error"]["message"] == NO_ACCESS
    assert response.json()["error"]["code"] == "forbidden"
    assert kube_token_rows(db, cluster_id=cluster_id) == []
    [event] = audit_events(db, "kube_token.mint")
    assert (event.result, event.cluster_id, event.detail["error"]) == (
        "failure",
        cluster_id,
        "forbidden",
    )


def test_being_an_admin_gives_no_kube_token_without_a_grant(api: Api, db: Engine) -> None:
    cluster_id = add_cluster(api)
    response = api.post(token_path(cluster_id))
    assert response.status_code == 403, response.text
    assert response.json()["error"]["message"] == NO_ACCESS
    assert kube_token_rows(db, cluster_id=cluster_id) == []


def test_unknown_and_other_organisations_clusters_are_not_found(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    _, foreign, _ = add_other_org(db)
    for cluster_id in (new_id(), foreign, "not-an-id"):
        response = api.post(token_path(cluster_id), member[1])
        assert response.status_code == 404, response.text
        assert response.json()["error"]["message"] == f"cluster {cluster_id} not found"
    assert kube_token_rows(db, cluster_id=foreign) == []


def test_a_sandbox_cluster_refuses_with_409(api: Api, member: tuple[str, str]) -> None:
    cluster_id = add_cluster(api, "play", kind="sandbox")
    response = api.post(token_path(cluster_id), member[1])
    assert response.status_code == 409, response.text
    assert response.json()["error"]["message"] == "Sandbox clusters do not support Cluster Access"


def test_minting_needs_an_api_token(api: Api, member: tuple[str, str]) -> None:
    cluster_id = granted_member(api, member)
    for headers in ({}, {"Authorization": "Bearer kg_api_made-up"}):
        response = api.client.post(token_path(cluster_id), headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthenticated"


def test_a_kube_token_is_not_an_api_token(api: Api, member: tuple[str, str]) -> None:
    cluster_id = granted_member(api, member)
    kube_token = api.post(token_path(cluster_id), member[1]).json()["token"]
    assert api.post(token_path(cluster_id), kube_token).status_code == 401


# --- the rate limit ----------------------------------------------------------------------


def test_the_fourth_mint_in_a_minute_is_rate_limited_with_retry_after(
    mint_limited: Api, db: Engine
) -> None:
    api = mint_limited
    cluster_id = add_cluster(api)
    user_id = add_user(db, org_id_of(api), MEMBER_EMAIL)
    token = api.login(MEMBER_EMAIL, MEMBER_PASSWORD)
    grant(api, cluster_id, user_id)
    assert [api.post(token_path(cluster_id), token).status_code for _ in range(3)] == [200] * 3

    response = api.post(token_path(cluster_id), token)
    assert response.status_code == 429, response.text
    retry_after = response.headers["retry-after"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= 20
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["details"] == {"retryAfterSeconds": int(retry_after)}
    assert error["message"] == f"too many kube tokens minted; try again in {retry_after} s"
    assert len(kube_token_rows(db, cluster_id=cluster_id)) == 3


def test_the_rate_limit_is_per_user(mint_limited: Api, db: Engine) -> None:
    api = mint_limited
    cluster_id = add_cluster(api)
    org_id = org_id_of(api)
    tokens = []
    for email in ("a@example.com", "b@example.com"):
        grant(api, cluster_id, add_user(db, org_id, email))
        tokens.append(api.login(email, MEMBER_PASSWORD))
    for _ in range(3):
        assert api.post(token_path(cluster_id), tokens[0]).status_code == 200
    assert api.post(token_path(cluster_id), tokens[0]).status_code == 429
    assert api.post(token_path(cluster_id), tokens[1]).status_code == 200


def test_refused_mints_do_not_use_up_the_rate(mint_limited: Api, db: Engine) -> None:
    api = mint_limited
    cluster_id = add_cluster(api)
    user_id = add_user(db, org_id_of(api), MEMBER_EMAIL)
    token = api.login(MEMBER_EMAIL, MEMBER_PASSWORD)
    for _ in range(5):
        assert api.post(token_path(cluster_id), token).status_code == 403
    grant(api, cluster_id, user_id)
    assert api.post(token_path(cluster_id), token).status_code == 200


# --- the gateway switch and the contract -------------------------------------------------


def test_disabled_gateway_answers_404_for_tokens_and_kubeconfigs(gateway_off: Api) -> None:
    api = gateway_off
    cluster_id = add_cluster(api)
    for path in (token_path(cluster_id), f"/api/v1/clusters/{cluster_id}/kubeconfig"):
        for headers in (api.auth(api.admin_token), {}):
            response = api.client.post(path, headers=headers)
            assert response.status_code == 404, (path, response.text)
            assert response.json()["error"]["message"] == (
                "the access gateway is disabled on this server"
            )


def test_openapi_documents_the_token_endpoint_and_its_errors(api: Api) -> None:
    operation = api.client.get("/openapi.json").json()["paths"][
        "/api/v1/clusters/{cluster_id}/k8s-token"
    ]["post"]
    assert {"200", "401", "403", "404", "409", "422", "429"} <= set(operation["responses"])
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/KubeTokenOut"}
    assert operation["requestBody"].get("required") is not True
