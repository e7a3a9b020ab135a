"""The Access keys page and the admin kubeconfig page over HTTP, on SQLite and PostgreSQL.

What a browser would not send by itself: forged writes (no CSRF token, another session's,
a member deleting someone else's key or asking for the admin kubeconfig), values the page's
own controls would not offer. The browser test (tests/e2e/test_portal_keys.py) drives the
same pages in Chromium. The session cookie is Secure, so it travels in a ``Cookie`` header.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine

from kubegate.tunnel.control import TokenAnswer, TokenRequest
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    add_cluster,
    add_user,
    audit_events,
    grant,
    me,
    org_id_of,
)
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.portal import COOKIE, Portal, sign_in
from tests.fixtures.tunnel_agent import agent_connected, register, wait_online

KEYS = "/portal/access-keys"
SECRET = re.compile(r"kgak_[A-Za-z0-9_\-]+")


@pytest.fixture
def admin(api: Api) -> Portal:
    return sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]


@pytest.fixture
def member_id(api: Api, db: Engine) -> str:
    return add_user(db, org_id_of(api), MEMBER_EMAIL)


@pytest.fixture
def member(api: Api, member_id: str) -> Portal:
    return sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]


def form_post(
    portal: Portal, path: str, csrf: str | None = "own", **fields: Any
) -> tuple[int, str, str]:
    """POST a page's form as the browser would: (status, body, Location)."""
    data = dict(fields)
    if csrf is not None:
        data["csrf_token"] = portal.csrf if csrf == "own" else csrf
    answer = portal.client.post(path, data=data, headers={"Cookie": f"{COOKIE}={portal.cookie}"})
    return answer.status_code, answer.text, answer.headers.get("location", "")


def create(portal: Portal, name: str = "ci-deploy", **fields: Any) -> tuple[int, str]:
    status, text, _ = form_post(portal, KEYS, name=name, **({"expires": "90"} | fields))
    return status, text


def keys_of(api: Api, token: str | None = None) -> list[dict[str, Any]]:
    answer = api.get("/api/v1/access-keys", token)
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


# --- Access keys ------------------------------------------------------------------------


def test_without_keys_the_page_says_what_to_do_next(api: Api, member: Portal) -> None:
    answer = member.get(KEYS)

    assert answer.status_code == 200
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    text = answer.text
    assert "No access keys yet" in text and "Make one below" in text
    assert 'action="/portal/access-keys"' in text and 'name="csrf_token"' in text
    assert 'aria-current="page">Access keys<' in text
    assert 'id="keys-member"' not in text  # whose keys to see is an admin's choice


def test_a_new_key_is_shown_once_works_and_is_listed_without_its_secret(
    api: Api, member: Portal, db: Engine
) -> None:
    status, text = create(member, "ci-deploy", expires="30")

    assert status == 201, text
    assert "you will not see it again" in text
    [secret] = set(SECRET.findall(text))
    assert 'data-copy="new-key-secret"' in text and "/portal/static/copy_button.js" in text
    assert api.get("/api/v1/me", secret).json()["user"]["email"] == MEMBER_EMAIL

    again = member.get(KEYS).text  # the page once more: the secret is gone for good
    assert secret not in again and "kgak_" not in again.replace("kgak_…", "")
    assert "you will not see it again" not in again
    assert 'data-key="ci-deploy"' in again and secret[-4:] in again
    assert "in 29 days" in again or "in 30 days" in again
    [event] = audit_events(db, "access_key.create")
    assert event.actor_email == MEMBER_EMAIL and event.detail["name"] == "ci-deploy"


def test_a_key_scoped_to_namespaces_of_one_cluster(api: Api, member: Portal) -> None:
    prod, _ = add_cluster(api, "prod"), add_cluster(api, "dev")

    status, text = create(
        member,
        "deployer",
        expires="never",
        scope="some",
        cluster=[prod],
        **{f"namespaces-{prod}": "team-a, team-b team-a"},
    )

    assert status == 201, text
    [key] = keys_of(api, api.login(MEMBER_EMAIL, MEMBER_PASSWORD))
    assert key["expires_at"] is None
    assert key["scope"]["clusters"] == [
        {"cluster_id": prod, "cluster_name": "prod", "namespaces": ["team-a", "team-b"]}
    ]
    listed = member.get(KEYS).text
    assert "prod: namespaces <code>team-a</code>, <code>team-b</code>" in listed


def test_a_key_expiring_on_a_date_stops_at_midnight_utc(api: Api, member: Portal) -> None:
    day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).date()
    status, _ = create(member, "dated", expires="date", expires_on=day.isoformat())
    assert status == 201
    [key] = keys_of(api, api.login(MEMBER_EMAIL, MEMBER_PASSWORD))
    assert key["expires_at"].startswith(f"{day.isoformat()}T00:00:00")


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"name": "  "}, 422, "Give the key a name (e.g. ci-deploy)"),
        ({"expires": "forever"}, 422, "&#39;forever&#39; is not an expiry this form offers"),
        ({"expires": "99999"}, 422, "not an expiry this form offers"),
        ({"expires": "date"}, 422, "enter the date the key stops working"),
        ({"expires": "date", "expires_on": "31/01/2030"}, 422, "write it as YYYY-MM-DD"),
        ({"expires": "date", "expires_on": "2020-01-01"}, 422, "which is not after today"),
        ({"scope": "some"}, 422, "tick at least one cluster"),
        ({"scope": "some", "cluster": ["0" * 32]}, 422, "is not a cluster of this organisation"),
    ],
)
def test_bad_input_is_refused_readably_and_creates_nothing(
    api: Api, member: Portal, fields: dict[str, Any], status: int, says: str
) -> None:
    answer = create(member, **({"name": "ci-deploy"} | fields))

    assert answer[0] == status
    assert 'role="alert" id="key-error">The access key was not created: ' in answer[1]
    assert says.lower() in answer[1].lower()
    assert "kgak_" not in answer[1].replace("kgak_…", "")
    assert keys_of(api, api.login(MEMBER_EMAIL, MEMBER_PASSWORD)) == []


def test_a_bad_namespace_is_named_and_the_form_kept(api: Api, member: Portal) -> None:
    prod = add_cluster(api, "prod")
    status, text = create(
        member, "ns-key", scope="some", cluster=[prod], **{f"namespaces-{prod}": "Team_A"}
    )
    assert status == 422
    assert "created: Namespace &#39;Team_A&#39; must consist of lower case letters" in text
    assert 'value="ns-key"' in text and 'value="Team_A"' in text
    assert f'value="{prod}" checked' in text


def test_a_second_key_of_the_same_name_is_a_409_saying_what_to_do(member: Portal) -> None:
    assert create(member, "ci-deploy")[0] == 201
    status, text = create(member, "ci-deploy")
    assert status == 409
    assert "You already have an access key named &#39;ci-deploy&#39;; pick another name" in text


def test_deleting_a_key_asks_first_then_it_stops_working(
    api: Api, member: Portal, db: Engine
) -> None:
    _, text = create(member, "short-lived")
    [secret] = set(SECRET.findall(text))
    [key] = keys_of(api, secret)

    confirm = member.get(f"{KEYS}/{key['id']}/delete")
    assert confirm.status_code == 200
    assert "Delete access key “short-lived”?" in confirm.text
    assert keys_of(api, secret) != []  # asking deletes nothing

    status, _, location = form_post(member, f"{KEYS}/{key['id']}/delete")
    assert (status, location) == (303, f"{KEYS}?done=deleted")
    assert "The access key was deleted." in member.get(location).text
    assert api.get("/api/v1/me", secret).status_code == 401
    [event] = audit_events(db, "access_key.delete")
    assert event.result == "success" and event.detail["name"] == "short-lived"


def test_forged_key_writes_are_refused_and_change_nothing(
    api: Api, admin: Portal, member: Portal
) -> None:
    for csrf in (None, "kg_csrf_forged", admin.csrf):  # none, made up, another session's
        status, text, _ = form_post(member, KEYS, csrf=csrf, name="forged", expires="30")
        assert status == 403, csrf
        assert "security token is missing or wrong" in text
    member_token = api.login(MEMBER_EMAIL, MEMBER_PASSWORD)
    assert keys_of(api, member_token) == []

    _, text = create(admin, "admins-key")
    [secret] = set(SECRET.findall(text))
    [key] = keys_of(api, secret)
    delete = f"{KEYS}/{key['id']}/delete"
    for csrf in (None, member.csrf):
        assert form_post(admin, delete, csrf=csrf)[0] == 403
    # A member's own session and token: refused by the rules, not only the token.
    status, text, _ = form_post(member, delete, user_id=me(api))
    assert status == 403
    assert "Only organisation admins can delete other members&#39; access keys" in text
    status, text, _ = form_post(member, delete)  # as if it were the member's own
    assert status == 404 and f"Access key {key['id']} not found" in text
    assert member.get(f"{KEYS}?user={me(api)}").status_code == 403
    assert [k["name"] for k in keys_of(api, secret)] == ["admins-key"]


def test_an_admin_sees_and_deletes_a_members_key(
    api: Api, admin: Portal, member: Portal, member_id: str
) -> None:
    _, text = create(member, "members-key")
    [secret] = set(SECRET.findall(text))
    [key] = keys_of(api, secret)

    page = admin.get(f"{KEYS}?user={member_id}").text
    assert f"Access keys of {MEMBER_EMAIL}" in page and 'data-key="members-key"' in page
    assert "Create access key" not in page  # keys are made by their owner only
    assert f'<option value="{member_id}" selected>{MEMBER_EMAIL}</option>' in page
    assert f'<option value="{me(api)}">{ADMIN_EMAIL} (you)</option>' in page
    assert f"/portal/access-keys/{key['id']}/delete?user={member_id}" in page
    confirm = admin.get(f"{KEYS}/{key['id']}/delete?user={member_id}").text
    assert f"{MEMBER_EMAIL}'s key ending in" in confirm

    status, _, location = form_post(admin, f"{KEYS}/{key['id']}/delete", user_id=member_id)
    assert (status, location) == (303, f"{KEYS}?user={member_id}&done=deleted")
    assert api.get("/api/v1/me", secret).status_code == 401


def test_the_page_without_a_session_goes_to_sign_in(api: Api) -> None:
    answer = api.client.get(KEYS)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/sign-in?next=%2Fportal%2Faccess-keys"


# --- The admin kubeconfig ---------------------------------------------------------------

CA = "-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"
INFO = {
    "cluster_name": "prod",
    "api_server_url": "https://10.0.0.1:6443",
    "api_server_ca": CA,
    "namespace": "kubegate-system",
}


def admin_page(cluster_id: str) -> str:
    return f"/portal/clusters/{cluster_id}/admin-kubeconfig"


def issue(request: TokenRequest) -> TokenAnswer:
    return TokenAnswer(
        request.request_id, token=f"bound-{request.name}", expires_at="2030-01-01T00:00:00Z"
    )


def test_an_admin_without_cluster_admin_gets_403_with_the_reason(
    api: Api, admin: Portal, db: Engine
) -> None:
    cluster_id = add_cluster(api, "prod")
    grant(api, cluster_id, me(api), "edit")  # edit is not enough

    answer = admin.get(admin_page(cluster_id))
    assert answer.status_code == 403
    assert "hold cluster-admin on the whole of cluster prod; you do not" in answer.text
    assert "/admin-kubeconfig" not in admin.get(f"/portal/clusters/{cluster_id}").text

    status, text, _ = form_post(admin, admin_page(cluster_id))
    assert status == 403 and "hold cluster-admin on the whole of cluster prod" in text
    [event] = audit_events(db, "cluster.admin_kubeconfig")  # the attempt, refused
    assert event.result == "failure"


def test_a_member_with_cluster_admin_gets_403_and_no_kubeconfig(
    api: Api, member: Portal, member_id: str
) -> None:
    cluster_id = add_cluster(api, "prod")
    grant(api, cluster_id, member_id, "cluster-admin")

    answer = member.get(admin_page(cluster_id))
    assert answer.status_code == 403
    assert "Only organisation admins can take the admin kubeconfig" in answer.text
    status, text, _ = form_post(member, admin_page(cluster_id))
    assert status == 403 and "apiVersion" not in text
    assert "/admin-kubeconfig" not in member.get(f"/portal/clusters/{cluster_id}").text


def test_another_organisations_cluster_is_not_found(api: Api, admin: Portal) -> None:
    answer = admin.get(admin_page("0" * 32))
    assert answer.status_code == 404 and "Cluster not found" in answer.text


@pytest.mark.anyio
async def test_the_page_warns_downloads_and_the_issuance_is_audited(
    api: Api, admin: Portal, db: Engine
) -> None:
    cluster_id, credential = register(api, "prod")
    grant(api, cluster_id, me(api), "cluster-admin")
    async with agent_connected(api.url, credential, info=INFO, tokens=issue) as agent:
        await wait_online(api, cluster_id, True)
        access = await asyncio.to_thread(admin.get, f"/portal/clusters/{cluster_id}")
        assert f'href="{admin_page(cluster_id)}"' in access.text
        page = await asyncio.to_thread(admin.get, admin_page(cluster_id))
        assert page.status_code == 200
        text = page.text
        assert "straight to prod's apiserver</strong>" in text
        assert "<code>https://10.0.0.1:6443</code>" in text
        assert "bypassing kubegate's proxy" in text
        assert "recorded in the audit log" in text and "listed to every admin" in text
        assert "<strong>1 hour</strong>" in text and "at most 4 hours" in text

        refused = await asyncio.to_thread(form_post, admin, admin_page(cluster_id), None)
        assert refused[0] == 403 and agent.token_requests == []
        bad = await asyncio.to_thread(
            form_post, admin, admin_page(cluster_id), duration_seconds="60"
        )
        assert bad[0] == 422
        assert "No admin kubeconfig was issued: duration_seconds must be between 600" in bad[1]
        answer = await asyncio.to_thread(
            admin.client.post,
            admin_page(cluster_id),
            data={"csrf_token": admin.csrf, "duration_seconds": "1800"},
            headers={"Cookie": f"{COOKIE}={admin.cookie}"},
        )
        [request] = agent.token_requests

    assert answer.status_code == 200, answer.text
    assert 'filename="kubegate-prod-admin.kubeconfig"' in answer.headers["content-disposition"]
    assert request.break_glass and request.expiration_seconds == 1800
    config = yaml.safe_load(answer.text)
    assert config["clusters"][0]["cluster"]["server"] == "https://10.0.0.1:6443"
    assert config["users"][0]["user"]["token"] == "bound-kubegate-break-glass"
    issued = [e for e in audit_events(db, "cluster.admin_kubeconfig") if e.result == "success"]
    assert [(e.actor_email, e.cluster_id) for e in issued] == [(ADMIN_EMAIL, cluster_id)]
    listed = api.get(f"/api/v1/clusters/{cluster_id}/admin-kubeconfigs").json()["items"]
    assert ("success", ADMIN_EMAIL) in [(i["result"], i["actor_email"]) for i in listed]
