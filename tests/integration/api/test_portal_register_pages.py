"""Registering a cluster in the portal (``/portal/clusters/register``), on SQLite and
PostgreSQL.

What a browser would not send by itself: forged writes (no CSRF token, another session's, a
member's session), a name the page's ``pattern`` would have stopped, a name taken. The
browser test (tests/e2e/test_portal_service_accounts.py) drives the same page in Chromium.
"""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from kubegate.auth.hashing import secret_hash
from kubegate.storage.models import Cluster
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    add_cluster,
    add_user,
    audit_events,
    org_id_of,
)
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.portal import COOKIE, Portal, sign_in

REGISTER = "/portal/clusters/register"


@pytest.fixture
def admin(api: Api) -> Portal:
    return sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]


@pytest.fixture
def member(api: Api, db: Engine) -> Portal:
    add_user(db, org_id_of(api), MEMBER_EMAIL)
    return sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]


def form_post(portal: Portal, csrf: str | None = "own", **fields: str) -> tuple[int, str]:
    """POST the register form as the browser would: (status, body)."""
    data = dict(fields)
    if csrf is not None:
        data["csrf_token"] = portal.csrf if csrf == "own" else csrf
    answer = portal.client.post(
        REGISTER, data=data, headers={"Cookie": f"{COOKIE}={portal.cookie}"}
    )
    return answer.status_code, answer.text


def cluster_rows(db: Engine) -> int:
    with Session(db) as session:
        return session.scalar(select(func.count()).select_from(Cluster)) or 0


def credential_in(text: str) -> str:
    start = text.index('<code id="agent-credential">') + len('<code id="agent-credential">')
    return text[start : text.index("</code>", start)]


def test_admin_sees_the_form_with_the_name_checked_in_the_browser(admin: Portal) -> None:
    answer = admin.get(REGISTER)
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'pattern="[a-z0-9]([\\-a-z0-9]*[a-z0-9])?"' in answer.text
    assert '<option value="sandbox">' in answer.text


def test_the_clusters_page_links_admins_to_it_and_not_members(
    admin: Portal, member: Portal
) -> None:
    assert f'href="{REGISTER}">Register your first cluster' in admin.get("/portal/clusters").text
    assert REGISTER not in member.get("/portal/clusters").text


def test_member_is_told_they_cannot_register_and_why(member: Portal, db: Engine) -> None:
    answer = member.get(REGISTER)
    assert answer.status_code == 403
    assert "Only organisation admins can register clusters, and you are a member" in answer.text
    assert 'name="name"' not in answer.text

    status, text = form_post(member, name="sneaky")
    assert status == 403 and "Only organisation admins can register clusters" in text
    assert cluster_rows(db) == 0
    [refusal] = audit_events(db, "cluster.register")
    assert refusal.result == "failure" and refusal.actor_email == MEMBER_EMAIL


def test_registering_shows_the_install_command_and_the_credential_once(
    api: Api, admin: Portal, db: Engine
) -> None:
    status, text = form_post(admin, name="prod-eu", kind="standard")

    assert status == 200, text
    credential = credential_in(text)
    assert credential.startswith("kg_agent_")
    with Session(db) as session:
        [cluster] = session.scalars(select(Cluster)).all()
        assert (cluster.name, cluster.kind) == ("prod-eu", "standard")
        assert cluster.agent_credential_hash == secret_hash(credential)
    assert "will not show it again" in text and "cannot re-issue it" in text
    assert f"KUBEGATE_CLUSTER_TOKEN={credential} \\\n" in text
    assert "kubegate cluster install-manifest prod-eu" in text
    assert "| kubectl apply -f -" in text and "Helm chart is not built yet" in text
    [event] = audit_events(db, "cluster.register")
    assert event.result == "success" and event.detail == {"name": "prod-eu", "kind": "standard"}

    # Reloading the page (GET) or posting again shows no credential.
    again = admin.get(REGISTER).text
    assert credential not in again and "agent-credential" not in again
    status, text = form_post(admin, name="prod-eu")
    assert status == 409 and credential not in text and "agent-credential" not in text
    assert "not registered: A cluster named &#39;prod-eu&#39; already exists" in text
    assert cluster_rows(db) == 1
    assert credential not in admin.get(f"/portal/clusters/{cluster.id}").text


def test_the_manifest_on_the_page_holds_the_credential(admin: Portal) -> None:
    _, text = form_post(admin, name="prod")
    credential = credential_in(text)
    start = text.index('<code id="install-manifest">') + len('<code id="install-manifest">')
    manifest = text[start : text.index("</code>", start)].replace("&#34;", '"')
    kinds = {doc["kind"]: doc for doc in yaml.safe_load_all(manifest.replace("&#39;", "'"))}
    assert kinds["Secret"]["stringData"]["cluster-token"] == credential


@pytest.mark.parametrize(
    ("name", "status", "says"),
    [
        ("Prod_EU", 422, "Cluster name &#39;Prod_EU&#39; must consist of lower case letters"),
        ("-prod", 422, "a DNS-1123 label"),
        ("a" * 64, 422, "must be at most 63 characters"),
        ("", 422, "The cluster was not registered: "),
    ],
)
def test_a_bad_name_is_refused_readably_and_the_form_kept(
    admin: Portal, db: Engine, name: str, status: int, says: str
) -> None:
    answer_status, text = form_post(admin, name=name, kind="sandbox")
    assert answer_status == status
    assert 'role="alert" id="register-error">The cluster was not registered: ' in text
    assert says in text
    assert '<option value="sandbox" selected>' in text
    assert cluster_rows(db) == 0


def test_an_unknown_kind_is_refused(admin: Portal, db: Engine) -> None:
    status, text = form_post(admin, name="prod", kind="giant")
    assert status == 422 and "Kind must be &#39;standard&#39; or &#39;sandbox&#39;" in text
    assert cluster_rows(db) == 0


def test_forged_registrations_are_refused_and_change_nothing(
    api: Api, admin: Portal, member: Portal, db: Engine
) -> None:
    for csrf in (None, "kg_csrf_forged", member.csrf):  # none, made up, another session's
        status, text = form_post(admin, csrf=csrf, name="forged")
        assert status == 403, csrf
        assert "security token is missing or wrong" in text and "kg_agent_" not in text
    assert cluster_rows(db) == 0


def test_the_rest_api_registers_the_same_way(api: Api, db: Engine) -> None:
    add_cluster(api, "prod")
    answer = api.post("/api/v1/clusters", json={"name": "prod"})
    assert answer.status_code == 409
    assert sorted(e.result for e in audit_events(db, "cluster.register")) == ["failure", "success"]


def test_without_a_session_the_page_goes_to_sign_in(api: Api) -> None:
    answer = api.client.get(REGISTER)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/sign-in?next=%2Fportal%2Fclusters%2Fregister"


def test_without_tls_there_is_no_ca_to_pin(admin: Portal, api: Api) -> None:
    # These servers speak plain HTTP; the browser test downloads the CA of a TLS one.
    _, text = form_post(admin, name="prod")
    assert "--ca-file" not in text and "kubegate-ca.crt" not in text
    assert api.client.get(f"{REGISTER}/kubegate-ca.crt").status_code == 404
