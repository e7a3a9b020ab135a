"""How ``kubegate audit`` prints an event, and what its ``--since``/``--until`` take."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import typer

from kubegate.cli.audit import event_line, moment

NOW = dt.datetime(2025, 1, 31, 9, 0, tzinfo=dt.UTC)
PROD = "c" * 32


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "created_at": "2025-01-31T08:59:58.123456+00:00",
        "actor_email": "ada@example.com",
        "cluster_id": PROD,
        "action": "kube.request",
        "target_type": "kube",
        "target_id": "pods",
        "result": "success",
        "verb": "create",
        "resource": "pods",
        "subresource": "exec",
        "namespace": "dev",
        "status_code": 101,
        "detail": {"name": "web", "container": "app", "command": ["sh", "-c", "id -u"]},
    }
    return {**base, **fields}


def test_a_proxied_exec_reads_like_the_kubectl_command_with_its_status() -> None:
    assert event_line(event(), {PROD: "prod"}) == (
        "2025-01-31T08:59:58Z  ada@example.com  prod  "
        "create pods/exec web -n dev -c app -- sh -c id -u  101"
    )


def test_an_admin_action_shows_its_target_and_result_and_a_deleted_cluster_its_id() -> None:
    line = event_line(
        event(
            action="cluster.delete",
            target_type="cluster",
            target_id=PROD,
            result="failure",
            actor_email="",
        ),
        {},
    )
    assert (
        line == f"2025-01-31T08:59:58Z  (kubegate)  {PROD}  cluster.delete cluster {PROD}  failure"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90m", "2025-01-31T07:30:00Z"),
        ("12h", "2025-01-30T21:00:00Z"),
        ("7d", "2025-01-24T09:00:00Z"),
        ("2025-01-01T00:00:00+01:00", "2025-01-01T00:00:00+01:00"),  # the server checks it
    ],
)
def test_since_takes_a_duration_back_from_now_or_a_time(text: str, expected: str) -> None:
    assert moment(text, "--since", NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", ""])
def test_anything_else_is_refused_naming_the_option(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="neither an RFC 3339 time"):
        moment(text, "--since", NOW)
