"""Registering, listing and deleting clusters."""

from __future__ import annotations

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
