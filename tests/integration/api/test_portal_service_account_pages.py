"""The portal's service accounts page (``/portal/service-accounts``), on SQLite and
PostgreSQL.

No agent is connected here, so accounts stay ``cluster offline``; the browser test
(tests/e2e/test_portal_service_accounts.py) watches one turn ``applied`` and uses its
kubeconfig with kubectl. What is checked here is what a browser would not send by itself:
forged writes, names the page's ``pattern`` would have stopped, an unknown cluster, a
duplicate — each refused readably, changing nothing.
"""

from __future__ import annotations

import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from kubegate.storage.models import ServiceAccount
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    add_cluster,
    add_other_org,
    add_user,
    audit_events,
    org_id_of,
)
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.portal import COOKIE, Portal, sign_in

PAGE = "/portal/service-accounts"


@pytest.fixture
def admin(api: Api) -> Portal:
    return sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]


@pytest.fixture
def member(api: Api, db: Engine) -> Portal:
    add_user(db, org_id_of(api), MEMBER_EMAIL)
    return sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]


def form_post(
    portal: Portal, path: str, csrf: str | None = "own", **fields: str
) -> tuple[int, str, str]:
    """POST a page's form as the browser would: (status, body, Location)."""
    data = dict(fields)
    if csrf is not None:
        data["csrf_token"] = portal.csrf if csrf == "own" else csrf
    answer = portal.client.post(path, data=data, headers={"Cookie": f"{COOKIE}={portal.cookie}"})
    return answer.status_code, answer.text, answer.headers.get("location", "")


def accounts(db: Engine) -> list[ServiceAccount]:
    with Session(db) as session:
        return list(session.scalars(select(ServiceAccount)))


def create(portal: Portal, cluster_id: str, **fields: str) -> tuple[int, str, str]:
    values = {"name": "ci-deployer", "namespace": "ci", "role": "edit", "scope": "namespace"}
    return form_post(portal, PAGE, cluster_id=cluster_id, **(values | fields))


def test_no_cluster_says_to_register_one_first(admin: Portal) -> None:
    text = admin.get(PAGE).text
    assert "No cluster to make service accounts on" in text
    assert 'href="/portal/clusters/register"' in text


def test_admin_creates_one_and_sees_it_listed_with_its_status(
    api: Api, admin: Portal, db: Engine
) -> None:
    cluster_id = add_cluster(api, "prod")
    add_cluster(api, "play", kind="sandbox")  # cannot have service accounts: not offered
    text = admin.get(PAGE).text
    assert "No service accounts yet. Use <strong>Create a service account</strong>" in text
    assert f'<option value="{cluster_id}"' in text and ">play<" not in text
    assert 'pattern="[a-z0-9]([\\-a-z0-9]*[a-z0-9])?"' in text

    status, _, location = create(admin, cluster_id)

    assert status == 303 and location == f"{PAGE}?done=created"
    [made] = accounts(db)
    assert (made.name, made.namespace, made.role, made.scope) == (
        "ci-deployer",
        "ci",
        "edit",
        "namespace",
    )
    [event] = audit_events(db, "service_account.create")
    assert event.result == "success" and event.actor_email == ADMIN_EMAIL
    text = admin.get(location).text
    assert "The service account was created." in text
    assert f'data-service-account="{made.id}"' in text
    fragment = admin.client.get(
        f"{PAGE}/table", headers={"HX-Request": "true", "Cookie": f"{COOKIE}={admin.cookie}"}
    ).text
    assert fragment.startswith('<div id="service-accounts"') and 'hx-trigger="every 1s"' in fragment
    assert 'data-status="cluster_offline">cluster offline' in fragment
    assert "the cluster&#39;s agent is not connected" in fragment


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"name": "CI_Deployer"}, 422, "Service account name &#39;CI_Deployer&#39; must consist"),
        ({"name": "-ci"}, 422, "a DNS-1123 label"),
        ({"namespace": "Team A"}, 422, "Namespace &#39;Team A&#39; must consist"),
        ({"role": "god"}, 422, "Role must be one of view, edit, admin, cluster-admin"),
        ({"scope": "galaxy"}, 422, "Scope must be namespace or cluster"),
        ({"cluster_id": ""}, 422, "Choose the cluster to make it on"),
        ({"cluster_id": "0" * 32}, 404, "Cluster 0000"),
    ],
)
def test_bad_input_is_refused_readably_and_the_form_kept(
    api: Api, admin: Portal, db: Engine, fields: dict[str, str], status: int, says: str
) -> None:
    cluster_id = add_cluster(api, "prod")
    fields = dict(fields)  # the parameters are shared by both databases' runs
    answer_status, text, _ = create(admin, fields.pop("cluster_id", cluster_id), **fields)
    assert answer_status == status
    assert 'role="alert" id="service-accounts-error">The service account was not created: ' in text
    assert says in text
    assert f'name="name" value="{fields.get("name", "ci-deployer")}"' in text  # the form kept
    assert accounts(db) == []


def test_a_duplicate_is_a_409_naming_it(api: Api, admin: Portal, db: Engine) -> None:
    cluster_id = add_cluster(api, "prod")
    assert create(admin, cluster_id)[0] == 303
    status, text, _ = create(admin, cluster_id)
    assert status == 409
    assert "Service account ci/ci-deployer already exists on cluster prod" in text
    assert len(accounts(db)) == 1


def test_another_organisations_cluster_is_not_found(admin: Portal, db: Engine) -> None:
    _, other_cluster, _ = add_other_org(db)
    status, text, _ = create(admin, other_cluster)
    assert status == 404 and "not found" in text
    assert accounts(db) == []


def test_member_is_told_they_cannot_and_why(api: Api, member: Portal, db: Engine) -> None:
    cluster_id = add_cluster(api, "prod")
    answer = member.get(PAGE)
    assert answer.status_code == 403
    assert "Only organisation admins manage service accounts, and you are a member" in answer.text
    assert "Create a service account" not in answer.text
    fragment = member.client.get(
        f"{PAGE}/table", headers={"HX-Request": "true", "Cookie": f"{COOKIE}={member.cookie}"}
    )
    assert fragment.status_code == 403 and "data-service-account" not in fragment.text

    status, text, _ = create(member, cluster_id)
    assert status == 403
    assert "The service account was not created: Only organisation admins can create" in text
    assert accounts(db) == []


def test_forged_writes_are_refused_and_change_nothing(
    api: Api, admin: Portal, member: Portal, db: Engine
) -> None:
    cluster_id = add_cluster(api, "prod")
    for csrf in (None, "kg_csrf_forged", member.csrf):  # none, made up, another session's
        status, text, _ = form_post(
            admin, PAGE, csrf=csrf, cluster_id=cluster_id, name="x", namespace="ci", role="edit"
        )
        assert status == 403, csrf
        assert "security token is missing or wrong" in text
    assert accounts(db) == []

    assert create(admin, cluster_id)[0] == 303
    [made] = accounts(db)
    delete = f"{PAGE}/{cluster_id}/{made.id}/delete"
    kubeconfig = {"account": f"{cluster_id}/{made.id}", "duration_seconds": "3600"}
    for csrf in (None, member.csrf):
        assert form_post(admin, delete, csrf=csrf)[0] == 403
        assert form_post(admin, f"{PAGE}/kubeconfig", csrf=csrf, **kubeconfig)[0] == 403
    status, text, _ = form_post(member, delete)
    assert status == 403 and "Only organisation admins can delete service accounts" in text
    status, text, _ = form_post(member, f"{PAGE}/kubeconfig", **kubeconfig)
    assert status == 403 and "kg_kube_" not in text
    assert len(accounts(db)) == 1
    assert audit_events(db, "service_account.kubeconfig")[0].result == "failure"


def test_delete_asks_first_then_deletes(api: Api, admin: Portal, db: Engine) -> None:
    cluster_id = add_cluster(api, "prod")
    create(admin, cluster_id)
    [made] = accounts(db)
    delete = f"{PAGE}/{cluster_id}/{made.id}/delete"
    assert f'href="{delete}"' in admin.get(PAGE).text

    confirm = admin.get(delete)
    assert confirm.status_code == 200
    assert "Delete ci/ci-deployer on prod?" in confirm.text
    assert f'action="{delete}"' in confirm.text and len(accounts(db)) == 1

    status, _, location = form_post(admin, delete)
    assert status == 303 and location == f"{PAGE}?done=deleted"
    assert accounts(db) == []
    assert len(audit_events(db, "service_account.delete")) == 1
    assert "The service account was deleted" in admin.get(location).text
    # Gone: the confirmation and the delete say so, readably.
    assert admin.get(delete).status_code == 404
    status, text, _ = form_post(admin, delete)
    assert status == 404 and "The service account was not deleted: Service account " in text


def test_kubeconfig_through_the_gateway_is_a_download_for_the_chosen_time(
    api: Api, admin: Portal, db: Engine
) -> None:
    cluster_id = add_cluster(api, "prod")
    create(admin, cluster_id)
    [made] = accounts(db)
    text = admin.get(PAGE).text
    assert '<option value="86400" selected>24 hours</option>' in text
    assert "30 days" not in text  # beyond this server's service_account_kubeconfig_max_seconds

    answer = admin.client.post(
        f"{PAGE}/kubeconfig",
        data={
            "csrf_token": admin.csrf,
            "account": f"{cluster_id}/{made.id}",
            "duration_seconds": "3600",
            "via": "gateway",
        },
        headers={"Cookie": f"{COOKIE}={admin.cookie}"},
    )

    assert answer.status_code == 200, answer.text
    assert (
        'filename="kubegate-prod-ci-deployer.kubeconfig"' in answer.headers["content-disposition"]
    )
    config = yaml.safe_load(answer.text)
    assert config["contexts"][0]["context"]["namespace"] == "ci"
    assert config["users"][0]["user"]["token"].startswith("kg_kube_")
    assert "kubegate-token-expires-at" in answer.headers
    [event] = audit_events(db, "service_account.kubeconfig")
    assert event.detail["via"] == "gateway"


def test_a_direct_kubeconfig_of_an_account_not_applied_says_why(
    api: Api, admin: Portal, db: Engine
) -> None:
    cluster_id = add_cluster(api, "prod")
    create(admin, cluster_id)
    [made] = accounts(db)
    status, text, _ = form_post(
        admin,
        f"{PAGE}/kubeconfig",
        account=f"{cluster_id}/{made.id}",
        duration_seconds="3600",
        via="direct",
    )
    assert status == 409
    assert "No kubeconfig was made: Service account ci/ci-deployer is cluster_offline" in text


def test_without_a_session_the_page_goes_to_sign_in(api: Api) -> None:
    answer = api.client.get(PAGE)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/sign-in?next=%2Fportal%2Fservice-accounts"


def test_with_the_gateway_off_only_direct_kubeconfigs_are_offered(gateway_off: Api) -> None:
    cluster_id = add_cluster(gateway_off, "prod")
    admin = sign_in(gateway_off.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]
    assert create(admin, cluster_id)[0] == 303

    text = admin.get(PAGE).text

    assert '<option value="direct">Straight to the apiserver (--direct)</option>' in text
    assert 'value="gateway"' not in text
    assert "not offered: the access gateway is turned off on this server" in text


def test_no_page_has_inline_script_or_style(api: Api, admin: Portal) -> None:
    cluster_id = add_cluster(api, "prod")
    create(admin, cluster_id)
    for text in (admin.get(PAGE).text, form_post(admin, "/portal/clusters/register", name="x")[1]):
        assert "style=" not in text and "<style" not in text
        assert "<script>" not in text and "<script src=" in text
