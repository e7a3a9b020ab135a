"""Reading the audit log: newest first, filtered by actor, cluster, action and time; admins only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import create_engine, insert

from kubegate.storage.models import AuditEvent
from tests.fixtures.api import ADMIN_EMAIL, Api

PASSWORD = "a long enough password"


def events(api: Api, token: str | None = None, **params: Any) -> list[dict[str, Any]]:
    """One page (up to 200) of audit events matching ``params``."""
    response = api.get("/api/v1/audit", token, params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def register(api: Api, name: str, token: str | None = None) -> str:
    response = api.post("/api/v1/clusters", token, json={"name": name})
    assert response.status_code == 201, response.text
    cluster_id: str = response.json()["cluster"]["id"]
    return cluster_id


def second_admin(api: Api, email: str) -> tuple[str, str]:
    """Another admin's user id and API token."""
    added = api.post(
        "/api/v1/users",
        json={"email": email, "display_name": "Second", "role": "admin", "password": PASSWORD},
    )
    assert added.status_code == 201, added.text
    return added.json()["id"], api.login(email, PASSWORD)


def test_events_come_newest_first(api: Api) -> None:
    for name in ("first", "second", "third"):
        register(api, name)
    names = [e["detail"]["name"] for e in events(api, action="cluster.register")]
    assert names == ["third", "second", "first"]
    assert events(api)[-1]["action"] == "org.bootstrap"  # the oldest of all


def test_an_event_says_who_did_what_to_which_target_and_when(api: Api) -> None:
    before = dt.datetime.now(dt.UTC)
    cluster_id = register(api, "prod")
    (event,) = events(api, action="cluster.register")
    me = api.get("/api/v1/me").json()["user"]
    assert event["actor_user_id"] == me["id"] and event["actor_email"] == ADMIN_EMAIL
    assert event["target_type"] == "cluster" and event["target_id"] == cluster_id
    assert event["cluster_id"] == cluster_id and event["result"] == "success"
    assert event["detail"] == {"name": "prod", "kind": "standard"}
    assert dt.datetime.fromisoformat(event["created_at"]) >= before - dt.timedelta(seconds=1)


def test_filter_by_actor_takes_an_email_in_any_case_or_a_user_id(api: Api) -> None:
    register(api, "by-first")
    user_id, token = second_admin(api, "second@example.com")
    register(api, "by-second", token)
    by_email = events(api, actor="SECOND@example.com")
    by_id = events(api, actor=user_id)
    assert by_email == by_id
    assert [e["detail"]["name"] for e in by_email] == ["by-second"]
    assert {e["actor_email"] for e in events(api, actor=ADMIN_EMAIL)} == {ADMIN_EMAIL}


def test_filter_by_cluster_keeps_a_deleted_clusters_history(api: Api) -> None:
    register(api, "other")
    cluster_id = register(api, "gone")
    assert api.delete(f"/api/v1/clusters/{cluster_id}").status_code == 204
    history = events(api, cluster_id=cluster_id)
    assert [e["action"] for e in history] == ["cluster.delete", "cluster.register"]


def test_filter_by_action_is_exact(api: Api) -> None:
    cluster_id = register(api, "prod")
    api.delete(f"/api/v1/clusters/{cluster_id}")
    assert [e["action"] for e in events(api, action="cluster.delete")] == ["cluster.delete"]
    assert events(api, action="cluster") == []


def test_since_is_inclusive_and_until_exclusive(api: Api) -> None:
    for name in ("a", "b", "c"):
        register(api, name)
    _, middle, _ = events(api, action="cluster.register")
    stamp = middle["created_at"]
    since = events(api, action="cluster.register", since=stamp)
    until = events(api, action="cluster.register", until=stamp)
    assert [e["detail"]["name"] for e in since] == ["c", "b"]
    assert [e["detail"]["name"] for e in until] == ["a"]


def test_times_in_any_offset_name_the_same_instant(api: Api) -> None:
    register(api, "a")
    (event,) = events(api, action="cluster.register")
    at = dt.datetime.fromisoformat(event["created_at"])
    in_tokyo = at.astimezone(dt.timezone(dt.timedelta(hours=9))).isoformat()
    in_utc_z = at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    assert events(api, action="cluster.register", since=in_tokyo) == [event]
    assert events(api, action="cluster.register", since=in_utc_z) == [event]
    later = (at + dt.timedelta(microseconds=1)).isoformat()
    assert events(api, action="cluster.register", since=later) == []


def test_an_empty_time_window_matches_nothing(api: Api) -> None:
    register(api, "a")
    now = dt.datetime.now(dt.UTC)
    window = {"since": now.isoformat(), "until": (now - dt.timedelta(days=1)).isoformat()}
    assert events(api, **window) == []


def test_a_time_without_a_zone_or_that_is_not_a_time_is_refused(api: Api) -> None:
    for value, problem in (
        ("2025-01-31T09:00:00", "must be an RFC 3339 time with a time zone"),
        ("yesterday", "must be an RFC 3339 time with a time zone"),
        ("2025-02-30T09:00:00Z", "is not a real time"),
    ):
        refused = api.get("/api/v1/audit", params={"since": value})
        assert refused.status_code == 422, value
        assert problem in refused.json()["error"]["message"]
        assert refused.json()["error"]["details"] == {"field": "since"}


def test_pages_follow_each_other_newest_first_without_gaps_or_repeats(api: Api) -> None:
    for i in range(5):
        register(api, f"c{i}")
    everything = events(api)
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/audit", params=params).json()
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything and len(seen) == 6  # five clusters and the bootstrap


def test_a_refused_admin_action_is_recorded_as_a_failure(api: Api) -> None:
    register(api, "dup")
    assert api.post("/api/v1/clusters", json={"name": "dup"}).status_code == 409
    failed, succeeded = events(api, action="cluster.register")
    assert succeeded["result"] == "success"
    assert failed["result"] == "failure" and failed["detail"]["error"] == "conflict"
    assert "already exists" in failed["detail"]["message"]


def test_members_cannot_read_the_audit_log(api: Api) -> None:
    added = api.post(
        "/api/v1/users",
        json={"email": "dev@example.com", "display_name": "Dev", "password": PASSWORD},
    )
    assert added.status_code == 201
    token = api.login("dev@example.com", PASSWORD)
    refused = api.get("/api/v1/audit", token)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "only organisation admins can read the audit log"


def test_another_organisations_events_stay_invisible(api: Api, database_url: str) -> None:
    engine = create_engine(database_url.replace("+aiosqlite", ""))
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(AuditEvent).values(
                    id="f" * 32,
                    org_id="e" * 32,
                    actor_email="someone@else.example",
                    action="cluster.register",
                    target_type="cluster",
                    target_id="d" * 32,
                    result="success",
                    detail={},
                    created_at=dt.datetime.now(dt.UTC),
                )
            )
    finally:
        engine.dispose()
    assert events(api, action="cluster.register") == []
    assert events(api, actor="someone@else.example") == []
