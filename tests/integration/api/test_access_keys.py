"""Access keys on the REST API (``/api/v1/access-keys``), on SQLite and PostgreSQL.

A key authenticates like its creator and its scope only narrows: at kube token mint, on the
REST API, and (``tests/e2e/test_access_key_kubectl.py``) at the proxy through real kubectl.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from kubegate.auth import access_keys
from kubegate.storage.models import AccessKey, Membership
from tests.fixtures.access import (
    MEMBER_EMAIL,
    NO_ACCESS,
    add_cluster,
    add_other_org,
    add_user,
    audit_events,
    grant,
    grants_path,
    kube_token_rows,
    me,
    org_id_of,
    sha256,
    token_path,
)
from tests.fixtures.api import Api

KEYS = "/api/v1/access-keys"


def create_key(api: Api, token: str | None = None, **body: Any) -> httpx.Response:
    return api.post(KEYS, token, json={"name": "ci", **body})


def new_key(api: Api, token: str | None = None, **body: Any) -> tuple[str, str]:
    """Create a key; answers (its id, its secret)."""
    response = create_key(api, token, **body)
    assert response.status_code == 201, response.text
    answer = response.json()
    return answer["access_key"]["id"], answer["secret"]


def scoped(*entries: tuple[str, list[str] | None]) -> dict[str, Any]:
    return {
        "clusters": [
            {"cluster": cluster}
            if namespaces is None
            else {"cluster": cluster, "namespaces": namespaces}
            for cluster, namespaces in entries
        ]
    }


def key_rows(db: Engine) -> list[AccessKey]:
    with Session(db) as session:
        return list(session.scalars(select(AccessKey).order_by(AccessKey.created_at)))


def error(response: httpx.Response) -> str:
    message: str = response.json()["error"]["message"]
    return message


# --- create, list, delete -------------------------------------------------------------------


def test_create_answers_the_secret_once_and_list_never_shows_it(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    response = create_key(api, member[1], expires_in_days=30)
    assert response.status_code == 201, response.text
    created = response.json()
    secret = created["secret"]
    assert access_keys.looks_valid(secret)
    key = created["access_key"]
    assert (key["name"], key["hint"], key["scope"], key["last_used_at"]) == (
        "ci",
        secret[-4:],
        None,
        None,
    )
    assert key["user_email"] == MEMBER_EMAIL
    listed = api.get(KEYS, member[1])
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["items"]
    assert item == key
    assert secret not in listed.text and sha256(secret) not in listed.text
    assert "secret" not in item and "secret_hash" not in item


def test_only_the_secrets_sha256_is_stored(api: Api, member: tuple[str, str], db: Engine) -> None:
    key_id, secret = new_key(api, member[1])
    [row] = key_rows(db)
    assert (row.id, row.secret_hash, row.hint) == (key_id, sha256(secret), secret[-4:])
    with db.connect() as conn:
        stored = conn.exec_driver_sql("SELECT * FROM access_keys").all()
        events = conn.exec_driver_sql("SELECT detail FROM audit_events").all()
    assert secret not in json.dumps([list(map(str, r)) for r in [*stored, *events]])


def test_a_key_authenticates_as_its_creator(api: Api, member: tuple[str, str]) -> None:
    _, secret = new_key(api, member[1])
    response = api.get("/api/v1/me", secret)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["email"] == MEMBER_EMAIL


def test_a_mistyped_key_is_refused_without_a_lookup(api: Api, member: tuple[str, str]) -> None:
    _, secret = new_key(api, member[1])
    typo = secret[:10] + ("A" if secret[10] != "A" else "B") + secret[11:]
    response = api.get("/api/v1/me", typo)
    assert response.status_code == 401
    assert "mistyped" in error(response) and "checksum" in error(response)


def test_an_unknown_well_formed_key_is_refused(api: Api) -> None:
    response = api.get("/api/v1/me", access_keys.new_key())
    assert response.status_code == 401
    assert "not valid" in error(response)


def test_create_and_delete_are_audited(api: Api, member: tuple[str, str], db: Engine) -> None:
    key_id, _ = new_key(api, member[1], expires_in_days=7)
    assert api.delete(f"{KEYS}/{key_id}", member[1]).status_code == 204
    [created] = audit_events(db, "access_key.create")
    [deleted] = audit_events(db, "access_key.delete")
    assert (created.actor_email, created.target_id, created.detail["name"]) == (
        MEMBER_EMAIL,
        key_id,
        "ci",
    )
    assert (deleted.target_id, deleted.result) == (key_id, "success")


def test_a_deleted_key_stops_working_and_its_kube_tokens_go(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, member[0])
    key_id, secret = new_key(api, member[1])
    minted = api.post(token_path(cluster_id), secret)
    assert minted.status_code == 200, minted.text
    [row] = kube_token_rows(db, cluster_id=cluster_id)
    assert row.access_key_id == key_id
    assert api.delete(f"{KEYS}/{key_id}", member[1]).status_code == 204
    assert kube_token_rows(db, cluster_id=cluster_id) == []
    assert key_rows(db) == []
    assert api.get("/api/v1/me", secret).status_code == 401


def test_names_are_unique_per_user(api: Api, member: tuple[str, str]) -> None:
    new_key(api, member[1])
    again = create_key(api, member[1])
    assert again.status_code == 409
    assert "already have an access key named 'ci'" in error(again)
    assert create_key(api).status_code == 201  # the admin's own 'ci'


# --- expiry ---------------------------------------------------------------------------------


def test_an_expired_key_is_refused_saying_so(api: Api, member: tuple[str, str], db: Engine) -> None:
    key_id, secret = new_key(api, member[1], expires_in_days=1)
    with Session(db) as session, session.begin():
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        session.execute(update(AccessKey).where(AccessKey.id == key_id).values(expires_at=past))
    response = api.get("/api/v1/me", secret)
    assert response.status_code == 401
    assert "expired" in error(response)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"expires_at": "2001-01-01T00:00:00Z"}, "in the past"),
        ({"expires_at": "2099-01-01T00:00:00"}, "time zone"),
        ({"expires_at": "2099-01-01T00:00:00Z", "expires_in_days": 3}, "not both"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"name": " "}, "blank"),
    ],
)
def test_bad_expiries_and_names_are_refused(
    api: Api, member: tuple[str, str], body: dict[str, Any], message: str
) -> None:
    response = create_key(api, member[1], **body)
    assert response.status_code == 422, response.text
    assert message in error(response)


def test_expires_at_is_kept_and_listed(api: Api, member: tuple[str, str]) -> None:
    response = create_key(api, member[1], expires_at="2099-01-31T09:00:00Z")
    assert response.status_code == 201, response.text
    assert response.json()["access_key"]["expires_at"].startswith("2099-01-31T09:00:00")


def test_kube_tokens_of_a_key_end_no_later_than_the_key(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    grant(api, cluster_id, member[0])
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=120)).replace(microsecond=0)
    _, secret = new_key(api, member[1], expires_at=soon.isoformat())
    minted = api.post(token_path(cluster_id), secret).json()
    assert dt.datetime.fromisoformat(minted["expires_at"].replace("Z", "+00:00")) <= soon


# --- last used ------------------------------------------------------------------------------


def test_last_used_at_is_recorded_off_the_request_path(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    key_id, secret = new_key(api, member[1])
    assert api.get("/api/v1/me", secret).status_code == 200
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10)
    while key_rows(db)[0].last_used_at is None:
        assert dt.datetime.now(dt.UTC) < deadline, "last_used_at was never written"
    [item] = api.get(KEYS, member[1]).json()["items"]
    assert item["id"] == key_id and item["last_used_at"] is not None


# --- admins and other members ----------------------------------------------------------------


def test_an_admin_lists_and_deletes_a_members_keys(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    key_id, secret = new_key(api, member[1])
    listed = api.get(f"/api/v1/users/{member[0]}/access-keys")
    assert listed.status_code == 200, listed.text
    assert [k["id"] for k in listed.json()["items"]] == [key_id]
    assert secret not in listed.text
    deleted = api.delete(f"/api/v1/users/{member[0]}/access-keys/{key_id}")
    assert deleted.status_code == 204, deleted.text
    assert api.get("/api/v1/me", secret).status_code == 401
    [event] = audit_events(db, "access_key.delete")
    assert event.detail["user_id"] == member[0]


def test_a_member_cannot_list_or_delete_anyone_elses_keys(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    admin_key, admin_secret = new_key(api)
    listed = api.get(f"/api/v1/users/{me(api)}/access-keys", member[1])
    assert listed.status_code == 403
    assert "only organisation admins" in error(listed)
    deleted = api.delete(f"/api/v1/users/{me(api)}/access-keys/{admin_key}", member[1])
    assert deleted.status_code == 403
    # Through their own route, someone else's key does not exist.
    assert api.delete(f"{KEYS}/{admin_key}", member[1]).status_code == 404
    assert api.get("/api/v1/me", admin_secret).status_code == 200
    assert [e.result for e in audit_events(db, "access_key.delete")] == ["failure"] * 2


def test_another_organisations_member_is_not_found(api: Api, db: Engine) -> None:
    add_other_org(db)
    response = api.get("/api/v1/users/" + "f" * 32 + "/access-keys")
    assert response.status_code == 404


def test_a_deactivated_creators_key_is_refused(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    _, secret = new_key(api, member[1])
    response = api.patch(f"/api/v1/users/{member[0]}", json={"is_active": False})
    assert response.status_code == 200, response.text
    refused = api.get("/api/v1/me", secret)
    assert refused.status_code == 401
    assert "deactivated" in error(refused)


def test_a_key_of_a_creator_who_lost_the_membership_row_is_refused(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    _, secret = new_key(api, member[1])
    with Session(db) as session, session.begin():
        session.execute(
            update(Membership).where(Membership.user_id == member[0]).values(is_active=False)
        )
    assert api.get("/api/v1/me", secret).status_code == 401


# --- scope ----------------------------------------------------------------------------------


@pytest.fixture
def two_clusters(api: Api, member: tuple[str, str]) -> tuple[str, str]:
    """Clusters prod and staging, the member holding a view grant on both."""
    prod, staging = add_cluster(api, "prod"), add_cluster(api, "staging")
    grant(api, prod, member[0])
    grant(api, staging, member[0])
    return prod, staging


def test_the_scope_is_listed_with_cluster_names(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str]
) -> None:
    prod, staging = two_clusters
    response = create_key(api, member[1], scope=scoped((prod, ["dev", "test"]), (staging, None)))
    assert response.status_code == 201, response.text
    scope = response.json()["access_key"]["scope"]
    assert sorted(scope["clusters"], key=lambda c: c["cluster_name"]) == [
        {"cluster_id": prod, "cluster_name": "prod", "namespaces": ["dev", "test"]},
        {"cluster_id": staging, "cluster_name": "staging", "namespaces": None},
    ]


@pytest.mark.parametrize(
    ("namespaces", "message"),
    [(["Dev"], "DNS-1123"), ([], "must not be empty"), (["a" * 64], "at most 63")],
)
def test_invalid_scope_namespaces_are_refused(
    api: Api,
    member: tuple[str, str],
    two_clusters: tuple[str, str],
    namespaces: list[str],
    message: str,
) -> None:
    response = create_key(api, member[1], scope=scoped((two_clusters[0], namespaces)))
    assert response.status_code == 422, response.text
    assert message in error(response)


def test_a_scope_naming_another_organisations_cluster_is_refused(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    _, other_cluster, _ = add_other_org(db)
    response = create_key(api, member[1], scope=scoped((other_cluster, None)))
    assert response.status_code == 422
    assert "is not a cluster of this organisation" in error(response)
    assert key_rows(db) == []


def test_a_key_scoped_to_one_cluster_cannot_mint_for_another(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str], db: Engine
) -> None:
    prod, staging = two_clusters
    key_id, secret = new_key(api, member[1], scope=scoped((prod, ["dev"])))
    refused = api.post(token_path(staging), secret)
    assert refused.status_code == 403
    assert error(refused) == "this access key's scope does not include cluster staging"
    minted = api.post(token_path(prod), secret)
    assert minted.status_code == 200, minted.text
    [row] = kube_token_rows(db, cluster_id=prod)
    assert row.access_key_id == key_id
    assert row.scope == {
        "clusters": [prod],
        "rules": [{"namespaces": ["dev"], "resources": ["*"], "verbs": ["*"]}],
    }
    [failure] = [e for e in audit_events(db, "kube_token.mint") if e.result == "failure"]
    assert failure.cluster_id == staging


def test_a_key_scoped_to_a_whole_cluster_mints_with_no_request_rules(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str], db: Engine
) -> None:
    prod, _ = two_clusters
    _, secret = new_key(api, member[1], scope=scoped((prod, None)))
    assert api.post(token_path(prod), secret).status_code == 200
    [row] = kube_token_rows(db, cluster_id=prod)
    assert row.scope == {"clusters": [prod], "rules": None}


def test_a_key_still_needs_its_creators_grant(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    _, secret = new_key(api, member[1], scope=scoped((cluster_id, None)))
    refused = api.post(token_path(cluster_id), secret)
    assert refused.status_code == 403
    assert error(refused) == NO_ACCESS


def test_a_scoped_key_lists_only_its_clusters_and_cannot_read_others(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str]
) -> None:
    prod, staging = two_clusters
    _, secret = new_key(api, member[1], scope=scoped((prod, ["dev"])))
    listed = api.get("/api/v1/clusters", secret).json()["items"]
    assert [c["name"] for c in listed] == ["prod"]
    assert api.get("/api/v1/clusters?name=staging", secret).json()["items"] == []
    assert api.get(f"/api/v1/clusters/{prod}", secret).status_code == 200
    for path in [f"/api/v1/clusters/{staging}", grants_path(staging)]:
        refused = api.get(path, secret)
        assert refused.status_code == 403, path
        assert error(refused) == f"this access key's scope does not include cluster {staging}"


def test_an_unscoped_key_sees_every_cluster(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str]
) -> None:
    _, secret = new_key(api, member[1])
    listed = api.get("/api/v1/clusters", secret).json()["items"]
    assert sorted(c["name"] for c in listed) == ["prod", "staging"]


def test_a_scoped_admin_key_is_refused_organisation_wide_routes(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str]
) -> None:
    prod, _ = two_clusters
    _, secret = new_key(api, scope=scoped((prod, None)))
    calls = [
        ("POST", "/api/v1/clusters", {"name": "new"}),
        ("GET", "/api/v1/users", None),
        ("PATCH", f"/api/v1/users/{member[0]}", {"is_active": False}),
        ("GET", "/api/v1/audit", None),
        ("GET", f"/api/v1/users/{member[0]}/access-keys", None),
    ]
    for method, path, body in calls:
        response = api.client.request(method, path, headers=api.auth(secret), json=body)
        assert response.status_code == 403, (path, response.text)
        assert "this access key is scoped to cluster" in error(response), path
        assert "whole organisation" in error(response)
    # The same key manages grants on its whole cluster.
    created = api.post(grants_path(prod), secret, json={"user_id": member[0], "role": "edit"})
    assert created.status_code == 201, created.text


def test_an_unscoped_admin_key_may_do_what_the_admin_may(api: Api, member: tuple[str, str]) -> None:
    _, secret = new_key(api)
    assert api.get("/api/v1/users", secret).status_code == 200
    assert api.post("/api/v1/clusters", secret, json={"name": "new"}).status_code == 201


def test_managing_grants_needs_the_whole_cluster_in_scope(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str]
) -> None:
    prod, _ = two_clusters
    _, secret = new_key(api, scope=scoped((prod, ["dev"])))
    assert api.get(grants_path(prod), secret).status_code == 200
    refused = api.post(grants_path(prod), secret, json={"user_id": member[0], "role": "edit"})
    assert refused.status_code == 403
    assert "needs a key scoped to the whole cluster" in error(refused)
    revoke_all = api.post(f"/api/v1/clusters/{prod}/access/revoke-all", secret)
    assert revoke_all.status_code == 403
    assert api.delete(f"/api/v1/clusters/{prod}", secret).status_code == 403


def test_a_key_cannot_create_a_key_wider_than_itself(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str], db: Engine
) -> None:
    prod, staging = two_clusters
    _, secret = new_key(api, member[1], scope=scoped((prod, ["dev"])))
    for wider in [
        None,
        scoped((prod, None)),
        scoped((prod, ["dev", "prod"])),
        scoped((staging, None)),
    ]:
        body: dict[str, Any] = {"name": "wider"}
        if wider is not None:
            body["scope"] = wider
        response = api.post(KEYS, secret, json=body)
        assert response.status_code == 403, (wider, response.text)
        assert "can only create keys within its own scope" in error(response)
    narrower = api.post(KEYS, secret, json={"name": "same", "scope": scoped((prod, ["dev"]))})
    assert narrower.status_code == 201, narrower.text
    assert len(key_rows(db)) == 2


def test_a_key_cannot_create_a_key_outliving_itself(api: Api, member: tuple[str, str]) -> None:
    _, secret = new_key(api, member[1], expires_in_days=5)
    assert api.post(KEYS, secret, json={"name": "forever"}).status_code == 403
    longer = api.post(KEYS, secret, json={"name": "longer", "expires_in_days": 6})
    assert longer.status_code == 403
    assert "expire no later than itself" in error(longer)
    assert api.post(KEYS, secret, json={"name": "shorter", "expires_in_days": 4}).status_code == 201


def test_a_scoped_key_cannot_delete_a_wider_key(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str]
) -> None:
    prod, _ = two_clusters
    wide_id, wide = new_key(api, member[1])
    _, narrow = new_key(api, member[1], name="narrow", scope=scoped((prod, ["dev"])))
    refused = api.delete(f"{KEYS}/{wide_id}", narrow)
    assert refused.status_code == 403
    assert "beyond this access key's scope" in error(refused)
    assert api.get("/api/v1/me", wide).status_code == 200


def test_a_key_cannot_be_logged_out(api: Api, member: tuple[str, str]) -> None:
    _, secret = new_key(api, member[1])
    response = api.post("/api/v1/auth/logout", secret)
    assert response.status_code == 400
    assert "access-key delete" in error(response)


def test_removing_the_creators_grant_stops_the_key_minting(
    api: Api, member: tuple[str, str], two_clusters: tuple[str, str]
) -> None:
    prod, _ = two_clusters
    _, secret = new_key(api, member[1], scope=scoped((prod, None)))
    assert api.post(token_path(prod), secret).status_code == 200
    revoked = api.post(f"/api/v1/clusters/{prod}/access/revoke", json={"email": MEMBER_EMAIL})
    assert revoked.status_code == 200, revoked.text
    refused = api.post(token_path(prod), secret)
    assert refused.status_code == 403
    assert error(refused) == NO_ACCESS


def test_another_members_key_cannot_be_used_by_org_id_tricks(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    other = add_user(db, org_id_of(api), "other@example.com")
    _, secret = new_key(api, member[1])
    assert api.get(f"/api/v1/users/{other}/access-keys", secret).status_code == 403
