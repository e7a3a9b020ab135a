"""``kubegate audit [--follow]`` and ``kubegate audit export`` against a real server, as an
admin runs them: the filters reach the API as it defines them, following sees what is
recorded after it started, and an export pages through everything, resumable."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from tests.fixtures.access import add_cluster, org_id_of
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.audit import CLUSTERS, seed
from tests.fixtures.cli import KUBEGATE, Cli
from tests.fixtures.gateway import wait_for
from tests.fixtures.kube import LineReader, stop


def admin(cli: Cli, api: Api) -> Cli:
    cli.ok("login", api.url, "--email", ADMIN_EMAIL, "--password-stdin", input=ADMIN_PASSWORD)
    return cli


def api_events(api: Api, **params: str) -> list[dict[str, Any]]:
    """What the API answers for ``params``, newest first, every page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": "200", **params, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/audit", params=query).json()
        found += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_audit_prints_the_latest_events_oldest_first_one_line_each(cli: Cli, api: Api) -> None:
    for name in ("first", "second", "third"):
        add_cluster(api, name)
    admin(cli, api)
    printed = cli.ok("audit", "--action", "cluster.register").splitlines()
    assert len(printed) == 3
    for line, name in zip(printed, ("first", "second", "third"), strict=True):
        assert f"{ADMIN_EMAIL}  {name}  cluster.register cluster " in line
        assert line.endswith("  success")
    older = cli.run("audit", "--action", "cluster.register", "--limit", "2")
    assert [line.split("  ")[2] for line in older.stdout.splitlines()] == ["second", "third"]
    assert "The latest 2 shown" in older.stderr


def test_the_filters_reach_the_api_as_it_defines_them(cli: Cli, api: Api, db: Engine) -> None:
    seed(db, org_id_of(api))
    prod = add_cluster(api, "prod")
    admin(cli, api)
    cases = [
        (
            ["--user", "ADA@example.com", "--status", "4xx"],
            {"actor": "ada@example.com", "status": "4xx"},
        ),
        (
            ["--cluster", CLUSTERS[1], "--verb", "delete"],
            {"cluster_id": CLUSTERS[1], "verb": "delete"},
        ),
        (["--resource", "pods/exec", "-n", "prod"], {"resource": "pods/exec", "namespace": "prod"}),
        (["--cluster", "prod"], {"cluster_id": prod}),
        (
            ["--action", "kube.request", "--since", "2d", "--until", "1h"],
            {"action": "kube.request"},
        ),
    ]
    for args, params in cases:
        expected = api_events(api, **params)
        assert expected, args  # each case matches something
        got = cli.json("audit", *args, "--limit", "1000")
        assert [e["id"] for e in got] == [e["id"] for e in reversed(expected)], args
    assert cli.json("audit", "--since", "1h", "--action", "kube.request") == []


def test_times_and_bad_filters_are_refused_with_the_reason(cli: Cli, api: Api) -> None:
    admin(cli, api)
    assert "neither an RFC 3339 time" in cli.fails("audit", "--since", "yesterday")
    assert "must be an RFC 3339 time with a time zone" in cli.fails(
        "audit", "--until", "2025-01-31T09:00:00"
    )
    assert "no cluster named 'nope'" in cli.fails("audit", "--cluster", "nope")
    assert "status" in cli.fails("audit", "--status", "4x")
    assert "put --user after `export`" in cli.fails("audit", "--user", "x", "export")


def test_follow_prints_an_event_recorded_after_it_started(cli: Cli, api: Api) -> None:
    add_cluster(api, "before")
    admin(cli, api)
    follower = subprocess.Popen(
        [*KUBEGATE, "audit", "--follow", "--action", "cluster.register", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=cli.env,
    )
    try:
        reader = LineReader(follower)
        reader.wait_for(r'"name":"before"')  # it has listed, so it is following now
        add_cluster(api, "after")
        line = reader.wait_for(r'^\{.*"name":"after".*\}$')
        event = json.loads(line.group(0))
        assert event["action"] == "cluster.register" and event["actor_email"] == ADMIN_EMAIL
        add_cluster(api, "later")
        reader.wait_for(r'"name":"later"')
        assert follower.poll() is None  # still following
        assert reader.lines.empty()  # nothing else, and nothing twice
    finally:
        stop(follower)


def test_export_writes_every_event_once_in_recorded_order_and_resumes(
    cli: Cli, api: Api, db: Engine, tmp_path: Path
) -> None:
    org_id = org_id_of(api)
    seeded = seed(db, org_id, count=450)  # more than two pages
    admin(cli, api)
    target = tmp_path / "audit.jsonl"
    result = cli.run("audit", "export", "--output", str(target), "--action", "kube.request")
    assert result.returncode == 0, result.stderr
    exported = lines(target)
    expected = sorted(seeded, key=lambda s: (s.recorded_at, s.id))
    assert [e["id"] for e in exported] == [s.id for s in expected]
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert "Exported 450 events" in result.stderr
    resume = result.stderr.split("--after ", 1)[1].split()[0]

    # More events, recorded since: the resumed export adds exactly those (once the API
    # shows them after the cursor, i.e. once they have settled).
    newer = seed(db, org_id, count=3, recorded=dt.datetime.now(dt.UTC))

    def settled() -> bool:
        query = {"after": resume, "action": "kube.request"}
        return len(api.get("/api/v1/audit", params=query).json()["items"]) == 3

    wait_for(settled, timeout=30, what="the new events to settle")
    refused = cli.fails("audit", "export", "--output", str(target), "--after", resume)
    assert "exists; pass --append" in refused
    again = cli.run(
        "audit",
        "export",
        "--output",
        str(target),
        "--append",
        "--after",
        resume,
        "--action",
        "kube.request",
    )
    assert again.returncode == 0, again.stderr
    assert "Exported 3 events" in again.stderr
    ids = [e["id"] for e in lines(target)]
    assert ids == [s.id for s in expected] + sorted(s.id for s in newer)


def test_export_to_stdout_takes_the_filters(cli: Cli, api: Api, db: Engine) -> None:
    seed(db, org_id_of(api))
    admin(cli, api)
    out = cli.ok("audit", "export", "--resource", "pods", "--status", "5xx")
    exported = [json.loads(line) for line in out.splitlines()]
    assert {e["id"] for e in exported} == {
        e["id"] for e in api_events(api, resource="pods", status="5xx")
    }
    assert all(e["resource"] == "pods" and e["status_code"] >= 500 for e in exported)
    assert exported and len(exported) == len({e["id"] for e in exported})


def test_a_cursor_file_makes_each_run_export_only_what_is_new(
    cli: Cli, api: Api, db: Engine, tmp_path: Path
) -> None:
    org_id = org_id_of(api)
    first = seed(db, org_id, count=5)
    admin(cli, api)
    cursor = tmp_path / "audit.cursor"
    args = ("audit", "export", "--cursor-file", str(cursor), "--action", "kube.request")
    assert {json.loads(line)["id"] for line in cli.ok(*args).splitlines()} == {s.id for s in first}
    assert cursor.read_text().strip()
    assert cli.ok(*args) == ""  # nothing new

    newer = seed(db, org_id, count=2, recorded=dt.datetime.now(dt.UTC))

    def exported() -> list[str] | None:
        out = cli.ok(*args)
        return [json.loads(line)["id"] for line in out.splitlines()] or None

    # The new events are exported by the first run after they settle, and only by that one.
    assert sorted(wait_for(exported, timeout=30, what="the new events")) == sorted(
        s.id for s in newer
    )
    assert cli.ok(*args) == ""
