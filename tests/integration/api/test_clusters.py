"""Registering, listing, finding and deleting clusters; each with the caller's own access."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session

from kubegate.storage.models import Grant
from tests.fixtures.access import (
    add_cluster,
    add_other_org,
    add_user,
    grants_path,
    me,
    org_id_of,
)
from tests.fixtures.api import Api


def test_register_answers_the_agent_credential_once_and_lists_the_cluster(api: Api) -> None:
    created = api.post("/api/v1/clusters", json={"name": "prod-eu"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["agent_credential"].startswith("kg_agent_")
    cluster = body["cluster"]
    assert cluster["name"] == "prod-eu" and cluster["kind"] == "standard"
    assert cluster["online"] is False
    listed = api.get("/api/v1/clusters").json()
    assert [c["name"] for c in listed["items"]] == ["prod-eu"]
    assert "agent_credential" not in str(listed)
    assert api.get(f"/api/v1/clusters/{cluster['id']}").json() == cluster


def test_duplicate_cluster_name_is_a_conflict(api: Api) -> None:
    assert api.post("/api/v1/clusters", json={"name": "dup"}).status_code == 201
    again = api.post("/api/v1/clusters", json={"name": "dup"})
    assert again.status_code == 409
    assert "already exists" in again.json()["error"]["message"]


def test_invalid_cluster_name_and_kind_are_refused(api: Api) -> None:
    bad_name = api.post("/api/v1/clusters", json={"name": "Prod_EU"})
    assert bad_name.status_code == 422
    assert bad_name.json()["error"]["details"] == {"field": "name"}
    bad_kind = api.post("/api/v1/clusters", json={"name": "ok", "kind": "huge"})
    assert bad_kind.status_code == 422
    assert "standard" in bad_kind.json()["error"]["message"]
    assert api.get("/api/v1/clusters").json()["items"] == []


def test_delete_removes_the_cluster(api: Api) -> None:
    cluster_id = api.post("/api/v1/clusters", json={"name": "gone"}).json()["cluster"]["id"]
    assert api.delete(f"/api/v1/clusters/{cluster_id}").status_code == 204
    missing = api.get(f"/api/v1/clusters/{cluster_id}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_list_pages_with_a_cursor(api: Api) -> None:
    for i in range(5):
        assert api.post("/api/v1/clusters", json={"name": f"c{i}"}).status_code == 201
    first = api.get("/api/v1/clusters", params={"limit": 2}).json()
    assert [c["name"] for c in first["items"]] == ["c0", "c1"]
    second = api.get("/api/v1/clusters", params={"limit": 2, "cursor": first["next_cursor"]})
    third = api.get(
        "/api/v1/clusters", params={"limit": 2, "cursor": second.json()["next_cursor"]}
    ).json()
    assert [c["name"] for c in second.json()["items"]] == ["c2", "c3"]
    assert [c["name"] for c in third["items"]] == ["c4"] and third["next_cursor"] is None
    bogus = api.get("/api/v1/clusters", params={"cursor": "not-a-cursor"})
    assert bogus.status_code == 400


def test_a_forged_cursor_without_a_timezone_is_a_clear_400(api: Api) -> None:
    import base64
    import json

    forged = base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00", "x"]).encode()).decode()
    response = api.get("/api/v1/clusters", params={"cursor": forged})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == {"field": "cursor"}


# --- what the CLI reads: the proxy URL and the caller's own access -----------------------


def _grant(api: Api, cluster_id: str, body: dict[str, Any], token: str | None = None) -> Any:
    response = api.post(grants_path(cluster_id), token, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _own(grant: dict[str, Any]) -> dict[str, Any]:
    """A grant as ``my_access`` shows it."""
    return {key: grant[key] for key in ("id", "role", "namespace", "status", "status_detail")}


def test_a_cluster_names_its_url_on_the_proxy(api: Api) -> None:
    cluster_id = add_cluster(api)
    [listed] = api.get("/api/v1/clusters").json()["items"]
    assert listed["server"] == f"{api.proxy_url}/clusters/{cluster_id}"
    assert listed["my_access"] == []
    assert api.get(f"/api/v1/clusters/{cluster_id}").json() == listed


def test_my_access_lists_the_callers_own_grants_with_their_status(
    api: Api, member: tuple[str, str]
) -> None:
    prod, staging = add_cluster(api, "prod"), add_cluster(api, "staging")
    wide = _grant(api, prod, {"user_id": member[0], "role": "view"})
    team = _grant(api, prod, {"user_id": member[0], "role": "edit", "namespace": "team-a"})
    _grant(api, prod, {"user_id": me(api), "role": "admin"})
    listed = {c["name"]: c for c in api.get("/api/v1/clusters", member[1]).json()["items"]}
    assert listed["prod"]["my_access"] == [_own(wide), _own(team)]
    assert listed["prod"]["my_access"][0] == {
        "id": wide["id"],
        "role": "view",
        "namespace": None,
        "status": "cluster_offline",
        "status_detail": "the cluster's agent is not connected",
    }
    assert listed["staging"]["my_access"] == []
    one = api.get(f"/api/v1/clusters/{prod}", member[1]).json()
    assert one["my_access"] == [_own(wide), _own(team)]
    assert api.get(f"/api/v1/clusters/{staging}", member[1]).json()["my_access"] == []


def test_my_access_never_shows_another_members_grants(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    cluster_id = add_cluster(api)
    other_id = add_user(db, org_id_of(api), "other@example.com")
    _grant(api, cluster_id, {"user_id": other_id, "role": "cluster-admin"})
    admins = _grant(api, cluster_id, {"user_id": me(api), "role": "admin"})
    [seen_by_member] = api.get("/api/v1/clusters", member[1]).json()["items"]
    assert seen_by_member["my_access"] == []
    assert api.get(f"/api/v1/clusters/{cluster_id}", member[1]).json()["my_access"] == []
    # An admin sees their own grants here too, not everybody's (that is GET .../grants).
    [seen_by_admin] = api.get("/api/v1/clusters").json()["items"]
    assert seen_by_admin["my_access"] == [_own(admins)]


def test_my_access_of_a_whole_page_is_read_in_one_query(api: Api, member: tuple[str, str]) -> None:
    for name in ("c0", "c1", "c2", "c3"):
        _grant(api, add_cluster(api, name), {"user_id": member[0], "role": "view"})
    statements: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        page = api.get("/api/v1/clusters", member[1]).json()
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert [len(c["my_access"]) for c in page["items"]] == [1, 1, 1, 1]
    # The proxy's cache reloads each changed cluster's grantees meanwhile (by cluster only);
    # the page reads the caller's grants (by user) once for every cluster on it.
    callers_grants = [s for s in statements if "FROM grants" in s and "grants.user_id = " in s]
    assert len(callers_grants) == 1, statements


def test_with_the_gateway_disabled_there_is_no_proxy_url_and_no_access(
    gateway_off: Api, database_url: str
) -> None:
    api = gateway_off
    cluster_id = add_cluster(api)
    engine = create_engine(database_url.replace("+aiosqlite", ""))
    try:
        with Session(engine) as session, session.begin():
            session.add(
                Grant(
                    cluster_id=cluster_id,
                    user_id=me(api),
                    role="view",
                    scope="cluster",
                    scope_key="cluster",
                )
            )
    finally:
        engine.dispose()
    [listed] = api.get("/api/v1/clusters").json()["items"]
    assert (listed["server"], listed["my_access"]) == (None, [])
    assert api.get(f"/api/v1/clusters/{cluster_id}").json() == listed


# --- finding a cluster by name -----------------------------------------------------------


def test_name_finds_the_cluster_of_that_exact_name(api: Api) -> None:
    ids = {name: add_cluster(api, name) for name in ("prod", "prod-eu", "staging")}
    found = api.get("/api/v1/clusters", params={"name": "prod"}).json()
    assert [c["id"] for c in found["items"]] == [ids["prod"]]
    assert found["next_cursor"] is None
    for missing in ("pro", "PROD", "nope"):
        empty = api.get("/api/v1/clusters", params={"name": missing})
        assert empty.status_code == 200
        assert empty.json() == {"items": [], "next_cursor": None}


def test_name_never_finds_another_organisations_cluster(
    api: Api, member: tuple[str, str], db: Engine
) -> None:
    add_other_org(db)  # its cluster is called b-prod
    for token in (None, member[1]):
        response = api.get("/api/v1/clusters", token, params={"name": "b-prod"})
        assert response.json() == {"items": [], "next_cursor": None}
    own = add_cluster(api, "b-prod")
    found = api.get("/api/v1/clusters", member[1], params={"name": "b-prod"}).json()
    assert [c["id"] for c in found["items"]] == [own]


def test_name_and_the_cursor_combine(api: Api) -> None:
    for i in range(4):
        add_cluster(api, f"c{i}")
    first = api.get("/api/v1/clusters", params={"limit": 2}).json()
    after_c1 = first["next_cursor"]
    assert after_c1 is not None
    before = api.get("/api/v1/clusters", params={"name": "c0", "cursor": after_c1}).json()
    after = api.get("/api/v1/clusters", params={"name": "c3", "cursor": after_c1}).json()
    assert before == {"items": [], "next_cursor": None}
    assert [c["name"] for c in after["items"]] == ["c3"] and after["next_cursor"] is None
    one = api.get("/api/v1/clusters", params={"name": "c2", "limit": 1}).json()
    assert [c["name"] for c in one["items"]] == ["c2"] and one["next_cursor"] is None


@pytest.mark.parametrize("name", ["", "x" * 64, "pro\nd"], ids=["empty", "64-chars", "newline"])
def test_a_name_no_cluster_can_have_is_refused_naming_the_field(api: Api, name: str) -> None:
    response = api.get("/api/v1/clusters", params={"name": name})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_failed"
    assert "name" in str(response.json()["error"])
