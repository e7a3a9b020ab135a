"""``GET /api/v1/audit``'s request filters and both page orders, on SQLite and PostgreSQL.

A fixed set of proxied-request events (every filtered column varied, ties in ``created_at``,
some rows recorded long after they happened) is inserted straight into the app's database;
each query's pages, followed to the end, must hold exactly the events a plain Python
predicate picks from the same set, in exactly the documented order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from kubegate.server.routers.audit_log import PARAMETERS
from tests.fixtures.access import org_id_of
from tests.fixtures.api import Api
from tests.fixtures.audit import ACTORS, CLUSTERS, Seeded, seed
from tests.fixtures.gateway import wait_for

EPOCH = "1970-01-01T00:00:00Z"
PROXIED = "kube.request"


@pytest.fixture
def seeded(api: Api, db: Engine) -> list[Seeded]:
    return seed(db, org_id_of(api))


def newest_first(api: Api, limit: int, **params: Any) -> list[dict[str, Any]]:
    """Every page of the newest-first listing, following ``next_cursor``."""
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": limit, **params, **({"cursor": cursor} if cursor else {})}
        response = api.get("/api/v1/audit", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= limit
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def in_recorded_order(
    api: Api, limit: int, after: str = EPOCH, **params: Any
) -> tuple[list[dict[str, Any]], str]:
    """Every page after ``after`` until caught up, and the follow cursor to go on with."""
    seen: list[dict[str, Any]] = []
    while True:
        response = api.get("/api/v1/audit", params={"limit": limit, "after": after, **params})
        assert response.status_code == 200, response.text
        page = response.json()
        seen += page["items"]
        after = page["follow_cursor"]
        if page["next_cursor"] is None:
            return seen, after
        assert page["next_cursor"] == after and len(page["items"]) == limit


Predicate = Callable[[Seeded], bool]

CASES: dict[str, tuple[dict[str, str], Predicate]] = {
    "user by email, any case": ({"actor": "ADA@example.com"}, lambda s: s.email == ACTORS[0][0]),
    "user by id": ({"actor": ACTORS[1][1]}, lambda s: s.user_id == ACTORS[1][1]),
    "cluster": ({"cluster_id": CLUSTERS[1]}, lambda s: s.cluster_id == CLUSTERS[1]),
    "verb": ({"verb": "delete"}, lambda s: s.verb == "delete"),
    "verb in capitals": ({"verb": "DELETE"}, lambda s: s.verb == "delete"),
    "resource with its subresources": ({"resource": "pods"}, lambda s: s.resource == "pods"),
    "one subresource": (
        {"resource": "pods/exec"},
        lambda s: s.resource == "pods" and s.subresource == "exec",
    ),
    "namespace": ({"namespace": "prod"}, lambda s: s.namespace == "prod"),
    "status code": ({"status": "403"}, lambda s: s.status == 403),
    "status class": ({"status": "5xx"}, lambda s: 500 <= s.status <= 599),
    "action": ({"action": "kube.request"}, lambda s: True),
    "everything combined": (
        {"actor": ACTORS[0][0], "cluster_id": CLUSTERS[0], "resource": "pods", "status": "2xx"},
        lambda s: (
            s.email == ACTORS[0][0]
            and s.cluster_id == CLUSTERS[0]
            and s.resource == "pods"
            and 200 <= s.status <= 299
        ),
    ),
    "no match": ({"verb": "get", "namespace": "nowhere"}, lambda s: False),
}


@pytest.mark.parametrize("case", CASES)
def test_a_filter_pages_through_exactly_its_events_newest_first(
    api: Api, seeded: list[Seeded], case: str
) -> None:
    params, wanted = CASES[case]
    expected = sorted(
        (s for s in seeded if wanted(s)), key=lambda s: (s.created_at, s.id), reverse=True
    )
    assert expected or case == "no match"  # the seeded set really exercises the filter
    got = newest_first(api, 4, **params)
    assert [e["id"] for e in got] == [s.id for s in expected]


@pytest.mark.parametrize("case", ["verb", "one subresource", "status class", "cluster"])
def test_a_filter_pages_through_exactly_its_events_in_recorded_order(
    api: Api, seeded: list[Seeded], case: str
) -> None:
    params, wanted = CASES[case]
    expected = sorted((s for s in seeded if wanted(s)), key=lambda s: (s.recorded_at, s.id))
    got, _ = in_recorded_order(api, 3, **params)
    assert [e["id"] for e in got] == [s.id for s in expected]


def test_a_time_window_combines_with_the_other_filters(api: Api, seeded: list[Seeded]) -> None:
    times = sorted({s.created_at for s in seeded})
    since, until = times[3], times[12]
    expected = [
        s.id
        for s in sorted(seeded, key=lambda s: (s.created_at, s.id), reverse=True)
        if since <= s.created_at < until and s.verb == "list"
    ]
    got = newest_first(api, 2, verb="list", since=since.isoformat(), until=until.isoformat())
    assert [e["id"] for e in got] == expected and expected


def test_an_event_shows_its_request_columns(api: Api, seeded: list[Seeded]) -> None:
    first = min(seeded, key=lambda s: (s.created_at, s.id))
    got = newest_first(api, 200, until=(first.created_at + dt.timedelta(seconds=1)).isoformat())
    event = next(e for e in got if e["id"] == first.id)
    assert {k: event[k] for k in ("verb", "resource", "subresource", "namespace")} == {
        "verb": first.verb,
        "resource": first.resource,
        "subresource": first.subresource,
        "namespace": first.namespace,
    }
    assert event["status_code"] == first.status and event["source"] == "10.0.0.7"
    assert event["user_agent"] == "kubectl/v1.37.0"
    assert dt.datetime.fromisoformat(event["recorded_at"]) == first.recorded_at


def test_a_late_written_event_is_met_by_a_follower_that_had_passed_its_time(
    api: Api, db: Engine, seeded: list[Seeded]
) -> None:
    _, cursor = in_recorded_order(api, 200, action=PROXIED)
    # Written now, though it happened a day ago (the database was down in between).
    [late] = seed(db, org_id_of(api), count=1, recorded=dt.datetime.now(dt.UTC))

    def arrived() -> list[dict[str, Any]]:
        return in_recorded_order(api, 200, after=cursor, action=PROXIED)[0]

    assert [e["id"] for e in wait_for(arrived, timeout=15, what="the late event")] == [late.id]


def test_a_follower_is_not_shown_what_is_still_settling_and_loses_none_of_it(
    api: Api, db: Engine, seeded: list[Seeded]
) -> None:
    _, cursor = in_recorded_order(api, 200, action=PROXIED)
    # Stamped a moment from now: as a write still committing looks to a reader.
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    [fresh] = seed(db, org_id_of(api), count=1, recorded=soon)
    # Within the settle time it is not shown, and the cursor does not move past it.
    items, later = in_recorded_order(api, 200, after=cursor, action=PROXIED)
    assert items == []
    items, _ = in_recorded_order(api, 200, after=later, action=PROXIED)
    assert items == []

    def arrived() -> list[dict[str, Any]]:
        return in_recorded_order(api, 200, after=later, action=PROXIED)[0]

    assert [e["id"] for e in wait_for(arrived, timeout=30, what="the settled event")] == [fresh.id]


def test_a_newest_first_answer_gives_a_cursor_to_follow_from(
    api: Api, seeded: list[Seeded]
) -> None:
    page = api.get("/api/v1/audit", params={"limit": 1}).json()
    followed, _ = in_recorded_order(api, 200, after=page["follow_cursor"])
    # Everything seeded was recorded well before the answer; only newer events would follow.
    assert {e["id"] for e in followed}.isdisjoint(s.id for s in seeded)


def test_after_takes_a_time_and_cursor_or_after_alone(api: Api, seeded: list[Seeded]) -> None:
    cut = sorted(s.recorded_at for s in seeded)[30]
    got, _ = in_recorded_order(api, 200, after=cut.isoformat(), action=PROXIED)
    assert [e["id"] for e in got] == [
        s.id for s in sorted(seeded, key=lambda s: (s.recorded_at, s.id)) if s.recorded_at >= cut
    ]
    page = api.get("/api/v1/audit", params={"limit": 2}).json()
    both = api.get("/api/v1/audit", params={"cursor": page["next_cursor"], "after": EPOCH})
    assert both.status_code == 422
    assert "not both" in both.json()["error"]["message"]


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("namespce=dev", "namespce", "unknown query parameter namespce"),
        ("verb=get&user=ada%40example.com", "user", "unknown query parameter user"),
        ("verb=get&verb=list", "verb", "verb is given 2 times"),
        ("status=abc", "status", ""),
        ("status=600", "status", ""),
        ("resource=pods/exec/x", "resource", ""),
    ],
)
def test_an_unknown_repeated_or_malformed_parameter_is_a_422_naming_it(
    api: Api, query: str, field: str, words: str
) -> None:
    refused = api.get(f"/api/v1/audit?{query}")
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["details"].get("field", "") == field or field in repr(error["details"])
    assert words in error["message"]


@pytest.mark.parametrize("after", ["not-a-cursor", "2025-01-31T09:00:00", "2025-02-30T09:00:00Z"])
def test_an_after_that_is_no_position_is_refused(api: Api, after: str) -> None:
    refused = api.get("/api/v1/audit", params={"after": after})
    assert refused.status_code == 400
    assert refused.json()["error"]["details"] == {"field": "after"}


def test_the_known_parameters_are_exactly_the_documented_ones(api: Api) -> None:
    operation = api.client.get("/openapi.json").json()["paths"]["/api/v1/audit"]["get"]
    documented = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
    assert documented == PARAMETERS
