"""The portal's templates, rendered without a server: escaping, empty states, access."""

from __future__ import annotations

import datetime as dt
from typing import Any

from kubegate.domain.access import Actor, MemberRole
from kubegate.server.portal_render import PAGE_HEADERS, PortalTemplates
from kubegate.server.principal import Principal
from kubegate.server.schemas.clusters import ClusterOut, OwnGrantOut

NOW = dt.datetime(2026, 12, 3, 8, 0, 0, tzinfo=dt.UTC)


def caller(role: MemberRole) -> Principal:
    actor = Actor(user_id="u1", org_id="o1", role=role)
    return Principal(actor, "<b>someone</b>@example.com", "t1", "session", NOW)


def clusters_page(role: MemberRole, clusters: list[ClusterOut], **extra: Any) -> str:
    context = {
        "title": "Clusters",
        "caller": caller(role),
        "is_admin": role is MemberRole.ADMIN,
        "csrf_token": "kg_csrf_x",
        "clusters": clusters,
        "more_clusters": False,
        "gateway_enabled": True,
        "refresh_seconds": 5,
        "now": NOW,
        **extra,
    }
    return PortalTemplates().render("clusters.html", context)


def cluster(**fields: Any) -> ClusterOut:
    values: dict[str, Any] = {
        "id": "c1",
        "name": "prod",
        "kind": "standard",
        "online": False,
        "last_seen_at": NOW - dt.timedelta(minutes=3),
        "created_at": NOW,
        "server": None,
        "my_access": [],
        **fields,
    }
    return ClusterOut(**values)


def test_no_cluster_tells_an_admin_how_to_register_one() -> None:
    page = clusters_page(MemberRole.ADMIN, [])
    assert "No clusters yet" in page
    assert 'href="/portal/clusters/register">Register your first cluster' in page


def test_no_cluster_tells_a_member_to_ask_an_admin() -> None:
    page = clusters_page(MemberRole.MEMBER, [])
    assert "Ask one of its admins to register yours" in page
    assert "/portal/clusters/register" not in page


def test_values_are_escaped() -> None:
    page = clusters_page(MemberRole.MEMBER, [])
    assert "<b>someone</b>" not in page
    assert "&lt;b&gt;someone&lt;/b&gt;@example.com" in page


def test_offline_cluster_shows_last_seen_relative_with_the_exact_time() -> None:
    page = clusters_page(MemberRole.MEMBER, [cluster()])
    assert "Offline" in page
    assert (
        '<time datetime="2026-12-03T07:57:00+00:00" title="2026-12-03 07:57:00 UTC">'
        "3 minutes ago</time>"
    ) in page


def test_access_names_role_scope_and_a_status_not_yet_applied() -> None:
    grants = [
        OwnGrantOut(id="g1", role="view", namespace="team-a", status="applied", status_detail=""),
        OwnGrantOut(id="g2", role="edit", namespace=None, status="pending", status_detail=""),
    ]
    page = clusters_page(MemberRole.MEMBER, [cluster(my_access=grants)])
    assert "view</span> in namespace <code>team-a</code>" in page
    assert "edit</span> on the whole cluster" in page
    assert '<span class="kg-tag kg-tag-pending">pending</span>' in page


def test_a_member_without_a_grant_is_told_to_ask_for_one() -> None:
    page = clusters_page(MemberRole.MEMBER, [cluster()])
    assert "None: ask an admin for a grant" in page


def test_pages_have_no_inline_script_or_style() -> None:
    page = clusters_page(MemberRole.ADMIN, [cluster()])
    assert "style=" not in page and "<style" not in page
    assert "<script>" not in page and "<script src=" in page
    assert "'unsafe-inline'" not in PAGE_HEADERS["Content-Security-Policy"]
