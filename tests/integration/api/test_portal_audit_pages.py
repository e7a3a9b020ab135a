"""The portal's Audit page over HTTP (``/portal/audit``), on SQLite and PostgreSQL.

The same seeded proxied requests as test_audit_filters.py (tests/fixtures/audit.py): a
filtered page must hold exactly the events a plain predicate picks, an invalid filter is a
readable 422 that shows no event, the older pages follow by cursor, the follow fragment adds
only what is recorded after its cursor, and the export is those events as JSON lines. The
browser test (tests/e2e/test_portal_members_audit.py) drives the page in Chromium.
"""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, update

from kubegate.storage.models import AuditEvent
from tests.fixtures.access import MEMBER_EMAIL, MEMBER_PASSWORD, add_cluster, add_user, org_id_of
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.audit import ACTORS, CLUSTERS, Seeded, seed
from tests.fixtures.gateway import wait_for
from tests.fixtures.portal import Portal, sign_in

AUDIT = "/portal/audit"
KEY = "k" * 32
_EVENT = re.compile(r'<tr data-event="([0-9a-f]{32})"')


@pytest.fixture
def admin(api: Api) -> Portal:
    return sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]


@pytest.fixture
def seeded(api: Api, db: Engine) -> list[Seeded]:
    return seed(db, org_id_of(api))


def shown(text: str) -> list[str]:
    """The ids of the events a page (or fragment) shows, in its order."""
    return _EVENT.findall(text)


def link(text: str, rel_text: str) -> str:
    """The address of the page's link with that text."""
    match = re.search(r'<a (?:class="[^"]*" )?href="([^"]+)"[^>]*>' + re.escape(rel_text), text)
    assert match is not None, rel_text
    return html.unescape(match.group(1))


def newest_first(events: list[Seeded]) -> list[str]:
    return [e.id for e in sorted(events, key=lambda e: (e.created_at, e.id), reverse=True)]


def test_admin_sees_events_with_who_what_status_cluster_and_source(
    api: Api, admin: Portal, seeded: list[Seeded]
) -> None:
    cluster_id = add_cluster(api, "prod")

    answer = admin.get(AUDIT)

    assert answer.status_code == 200
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    text = answer.text
    newest = text.split(f'data-event="{shown(text)[0]}"', 1)[1].split("</tr>", 1)[0]
    assert "cluster.register" in newest and ADMIN_EMAIL in newest  # just now, on top
    assert ">prod<" in newest and "just now</time>" in newest
    exec_row = max((s for s in seeded if s.subresource == "exec"), key=lambda s: s.created_at)
    row = text.split(f'data-event="{exec_row.id}"', 1)[1].split("</tr>", 1)[0]
    assert f"{exec_row.verb} pods/exec" in row and "10.0.0.7" in row
    assert f">{exec_row.status}<" in row and 'title="20' in row
    assert 'aria-current="page">Audit<' in text
    assert f'href="{AUDIT}/export?"' in text and f'href="{AUDIT}?follow=on"' in text
    del cluster_id


def test_an_exec_row_shows_its_command_and_the_access_key_used(
    api: Api, admin: Portal, db: Engine
) -> None:
    [made] = seed(db, org_id_of(api), count=1)
    with db.begin() as conn:
        conn.execute(
            update(AuditEvent)
            .where(AuditEvent.id == made.id)
            .values(
                subresource="exec",
                namespace="dev",
                detail={"name": "web-0", "command": ["sh", "-c", "ls /"], "access_key_id": KEY},
            )
        )

    text = admin.get(AUDIT).text

    row = text.split(f'data-event="{made.id}"', 1)[1].split("</tr>", 1)[0]
    assert f"via access key {KEY}" in row
    assert f"{made.verb} pods/exec</code>" in row and "web-0" in row and "namespace dev" in row
    assert "$ sh -c ls /" in row


def test_a_member_is_told_they_cannot_read_the_audit_log(api: Api, db: Engine) -> None:
    add_user(db, org_id_of(api), MEMBER_EMAIL)
    member = sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]

    for path in (AUDIT, f"{AUDIT}/export"):
        answer = member.get(path)
        assert answer.status_code == 403, path
        assert "Only organisation admins can" in answer.text
        assert "data-event" not in answer.text
    fragment = member.get(f"{AUDIT}/live?after=1970-01-01T00:00:00Z")
    assert fragment.status_code == 403 and "data-event" not in fragment.text


ADA, BOB = (email for email, _ in ACTORS)
FILTERS: list[tuple[dict[str, str], Callable[[Seeded], bool]]] = [
    ({"actor": ADA.upper()}, lambda s: s.email == ADA),
    ({"cluster_id": CLUSTERS[1]}, lambda s: s.cluster_id == CLUSTERS[1]),
    ({"verb": "DELETE"}, lambda s: s.verb == "delete"),
    ({"resource": "pods"}, lambda s: s.resource == "pods"),
    ({"resource": "pods/exec"}, lambda s: s.subresource == "exec"),
    ({"namespace": "dev"}, lambda s: s.namespace == "dev"),
    ({"status": "403"}, lambda s: s.status == 403),
    ({"status": "5xx"}, lambda s: 500 <= s.status <= 599),
    (
        {"actor": BOB, "resource": "pods", "status": "4xx", "action": "kube.request"},
        lambda s: s.email == BOB and s.resource == "pods" and 400 <= s.status < 500,
    ),
]


@pytest.mark.parametrize(("filters", "picks"), FILTERS, ids=[str(f[0]) for f in FILTERS])
def test_filters_show_exactly_the_matching_events_newest_first(
    api: Api,
    admin: Portal,
    seeded: list[Seeded],
    filters: dict[str, str],
    picks: Callable[[Seeded], bool],
) -> None:
    # The form sends every field, the unused ones empty: an empty field filters nothing.
    query = {name: "" for name in ("actor", "namespace", "since", "until")} | filters

    text = admin.get(AUDIT, params=query).text

    assert shown(text) == newest_first([s for s in seeded if picks(s)])
    assert f'value="{filters.get("namespace", "")}"' in text  # the form shows the filter


def test_a_time_window_shows_the_events_in_it(
    api: Api, admin: Portal, seeded: list[Seeded]
) -> None:
    since, until = seeded[9].created_at, seeded[30].created_at
    query = {"since": since.isoformat(), "until": until.isoformat().replace("+00:00", "Z")}

    text = admin.get(AUDIT, params=query).text

    assert shown(text) == newest_first([s for s in seeded if since <= s.created_at < until])


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("status=abc", "status must be an HTTP status code such as 403 or a class such as 5xx"),
        ("since=yesterday", "Since must be an RFC 3339 time with a time zone"),
        ("until=2025-02-30T00:00:00Z", "is not a real time"),
        ("resource=pods/exec/x", "resource must be a resource such as pods, or a resource"),
        ("namespace=" + "n" * 64, "namespace is at most 63 characters"),
        ("user=ada@example.com", "the audit page has no filter user"),
        ("verb=get&verb=list", "verb is given 2 times; give each filter once"),
        ("cursor=not-a-cursor", "cursor is not one this server issued"),
    ],
)
def test_an_invalid_filter_is_a_readable_422_never_everything(
    api: Api, admin: Portal, seeded: list[Seeded], query: str, says: str
) -> None:
    answer = admin.get(f"{AUDIT}?{query}")

    assert answer.status_code == 422 or (answer.status_code == 400 and "cursor" in query)
    text = html.unescape(answer.text)
    assert 'role="alert" id="audit-error">The audit log was not read: ' in text
    assert says.lower() in text.lower()
    assert shown(text) == []


def test_older_events_follow_by_cursor_with_the_filters_kept(
    api: Api, admin: Portal, seeded: list[Seeded]
) -> None:
    first = admin.get(AUDIT, params={"action": "kube.request"}).text
    assert shown(first) == newest_first(seeded)[:50]

    older = link(first, "Older events")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(older).query)["action"] == ["kube.request"]
    second = admin.get(older).text

    assert shown(second) == newest_first(seeded)[50:]
    assert "Older events" not in second
    assert link(second, "Newest events") == f"{AUDIT}?action=kube.request"


def test_the_follow_fragment_adds_only_events_recorded_after_its_cursor(
    api: Api, admin: Portal, seeded: list[Seeded]
) -> None:
    page = admin.get(AUDIT, params={"follow": "on", "action": "cluster.register"}).text
    assert 'id="following"' in page and shown(page) == []
    live = html.unescape(re.search(r'id="audit-live" hx-get="([^"]+)"', page).group(1))  # type: ignore[union-attr]
    assert "action=cluster.register" in live and "after=" in live

    fragment = admin.get(live).text
    assert shown(fragment) == [] and fragment.startswith('<tbody id="audit-live"')

    cluster_id = add_cluster(api, "staging")
    add_cluster(api, "other")
    api.get(f"/api/v1/clusters/{cluster_id}")  # not a cluster.register event

    def next_rows() -> list[str] | None:
        nonlocal live
        answer = admin.client.get(live, headers={**admin.headers(None), "HX-Request": "true"})
        assert answer.status_code == 200
        live = html.unescape(re.search(r'hx-get="([^"]+)"', answer.text).group(1))  # type: ignore[union-attr]
        return shown(answer.text) or None

    added: list[str] = []
    while len(added) < 2:
        # Each answer goes on top of the ones before it.
        added = wait_for(next_rows, timeout=15, what="the new events in the fragment") + added
    events = api.get("/api/v1/audit", params={"action": "cluster.register"}).json()["items"]
    assert added == [e["id"] for e in events]  # newest on top, each once, nothing older
    assert shown(admin.get(live).text) == []  # after the new cursor: nothing again


def test_the_follow_fragment_without_a_session_sends_the_page_to_sign_in(api: Api) -> None:
    answer = api.client.get(
        f"{AUDIT}/live?after=1970-01-01T00:00:00Z",
        headers={"HX-Request": "true", "Cookie": "__Host-kubegate_session=kg_session_gone"},
    )
    assert answer.status_code == 401 and "hx-redirect" in answer.headers


def test_export_streams_the_filtered_events_as_json_lines(
    api: Api, admin: Portal, seeded: list[Seeded]
) -> None:
    with admin.client.stream(
        "GET",
        f"{AUDIT}/export",
        params={"actor": ADA, "status": "2xx"},
        headers=admin.headers(None),
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-ndjson"
        assert answer.headers["content-disposition"].startswith(
            'attachment; filename="kubegate-audit-'
        )
        lines = [json.loads(line) for line in answer.iter_lines() if line]

    wanted = [s for s in seeded if s.email == ADA and 200 <= s.status < 300]
    in_recorded_order = sorted(wanted, key=lambda s: (s.recorded_at, s.id))
    assert [line["id"] for line in lines] == [s.id for s in in_recorded_order]
    assert {line["actor_email"] for line in lines} == {ADA}
    assert set(lines[0]) >= {"created_at", "recorded_at", "verb", "resource", "detail"}


def test_export_with_an_invalid_filter_exports_nothing(api: Api, admin: Portal) -> None:
    answer = admin.get(f"{AUDIT}/export", params={"since": "last week"})
    assert answer.status_code == 422
    assert "Nothing was exported" in answer.text and "RFC 3339" in answer.text


def test_without_a_session_the_page_goes_to_sign_in(api: Api) -> None:
    answer = api.client.get(AUDIT)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/sign-in?next=%2Fportal%2Faudit"
