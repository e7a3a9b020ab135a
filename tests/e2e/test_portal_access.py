"""A cluster's Access view in real Chromium against a real server, agent and apiserver.

The admin opens the cluster from the Clusters page, is stopped by the browser from sending a
namespace that is not a DNS-1123 label, creates a grant for a member and watches it turn
``applied`` without the page reloading (htmx polls the grants), then deletes it; a wrong
typed name revokes nothing. A member sees their access and no manage control, downloads a
kubeconfig and real kubectl works with it. A sandbox cluster says it has no Cluster Access.
Every page is checked by axe-core and for CSP violations; screenshots as in
test_portal_pages.py (``$KUBEGATE_PORTAL_SCREENSHOTS``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
import yaml
from lightkube import Client
from playwright._impl._errors import TargetClosedError
from playwright.sync_api import Browser, BrowserContext, Page, expect

from testenv.controlplane import Credentials
from testenv.gateway import GatewayServer
from testenv.system import kubectl_binaries
from tests.fixtures.gateway import Deployment, running_deployment
from tests.fixtures.kube import Kubectl
from tests.fixtures.portal_browser import (
    Person,
    assert_accessible,
    deployment_admin,
    new_member,
    save_screenshot,
    sign_in,
    sign_in_at,
    submit,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[Deployment]:
    with running_deployment(
        tmp_path_factory.mktemp("portal-access"), kube_credentials, kube_admin
    ) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def admin(gateway: Deployment) -> Person:
    return deployment_admin(gateway)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def context(portal_context: BrowserContext) -> BrowserContext:
    return portal_context


@pytest.fixture
def page(portal_page: Page) -> Page:
    return portal_page


def open_access(page: Page, gateway: Deployment) -> None:
    """From the Clusters page, follow the cluster's link to its Access view."""
    page.get_by_role("link", name=gateway.cluster["name"], exact=True).click()
    page.wait_for_url(f"{gateway.server.url}/portal/clusters/{gateway.cluster_id}")
    expect(page.get_by_role("heading", name=gateway.cluster["name"], level=1)).to_be_visible()


def test_admin_creates_a_grant_sees_it_applied_live_and_deletes_it(
    gateway: Deployment, admin: Person, page: Page, screenshots: Path
) -> None:
    member = new_member(gateway)
    sign_in(page, gateway, admin)
    open_access(page, gateway)
    expect(page.locator(f'tr[data-member="{member.email}"]')).to_be_visible()

    # The browser refuses a namespace that is not a DNS-1123 label: nothing is sent.
    page.get_by_label("Member", exact=True).select_option(member.email)
    page.get_by_label("Role", exact=True).select_option("edit")
    page.get_by_label("Scope", exact=True).select_option("namespace")
    namespace = page.get_by_label("Namespace", exact=True)
    namespace.fill("Team_A")
    page.get_by_role("button", name="Create grant").click()
    assert namespace.evaluate("e => e.validity.patternMismatch") is True
    expect(page.get_by_role("status")).to_have_count(0)

    namespace.fill("default")
    submit(page, page.get_by_role("button", name="Create grant"), "created")
    expect(page.get_by_role("status")).to_contain_text("The grant was created.")
    row = page.locator(f'#grants tr[data-email="{member.email}"]', has_text="edit")
    expect(row.locator('td[data-label="Role"]')).to_have_text("edit")
    page.evaluate("window.kgNotReloaded = true")

    # The agent applies it; the polled fragment shows so, the page not reloaded.
    expect(row.locator("[data-status]")).to_have_text("applied", timeout=20_000)
    assert page.evaluate("window.kgNotReloaded") is True

    # A namespace that does not exist: the agent fails it, and the view says why, live.
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Member", exact=True).select_option(member.email)
    page.get_by_label("Role", exact=True).select_option("view")
    page.get_by_label("Namespace", exact=True).fill(missing)
    submit(page, page.get_by_role("button", name="Create grant"), "created")
    failed = page.locator(f'#grants tr[data-email="{member.email}"]', has_text=missing)
    page.evaluate("window.kgNotReloaded = true")
    expect(failed.locator("[data-status]")).to_have_text("failed", timeout=20_000)
    expect(failed.locator(".kg-detail")).to_contain_text(missing)
    assert page.evaluate("window.kgNotReloaded") is True
    save_screenshot(page, screenshots, "access-admin")
    assert_accessible(page)
    delete = f"Delete view grant of {member.email} in {missing}"
    submit(page, page.get_by_role("button", name=delete), "deleted")

    delete = f"Delete edit grant of {member.email} in default"
    submit(page, page.get_by_role("button", name=delete), "deleted")
    expect(page.get_by_role("status")).to_contain_text("The grant was deleted")
    expect(row).to_have_count(0)
    assert all(g["user_email"] != member.email for g in gateway.grants().values())


def test_revoke_all_with_a_wrong_name_revokes_nothing(
    gateway: Deployment, admin: Person, page: Page, screenshots: Path
) -> None:
    member = new_member(gateway)
    kept = gateway.grant(member.email, "view", "default")
    sign_in(page, gateway, admin)
    open_access(page, gateway)

    page.get_by_label("Type the cluster's name").fill(gateway.cluster["name"] + "-typo")
    with page.expect_response(lambda r: r.url.endswith("/revoke-all")) as answer:
        page.get_by_role("button", name="Revoke all access").click()
    assert answer.value.status == 400

    expect(page.get_by_role("alert")).to_contain_text(
        "Nothing was revoked: You typed '" + gateway.cluster["name"] + "-typo', not the "
        "cluster's name"
    )
    assert kept["id"] in gateway.grants()
    save_screenshot(page, screenshots, "access-revoke-all-wrong-name")
    assert_accessible(page)
    gateway.delete_grant(kept["id"])


def test_member_sees_no_manage_controls_and_downloads_a_working_kubeconfig(
    gateway: Deployment, page: Page, screenshots: Path, tmp_path: Path
) -> None:
    member = new_member(gateway)
    grant = gateway.grant(member.email, "view", "default")
    gateway.wait_status(grant["id"], "applied")
    sign_in(page, gateway, member)
    open_access(page, gateway)

    expect(page.locator("#my-access")).to_have_text("view in namespace default")
    expect(page.locator("pre")).to_contain_text(
        f"kubegate cluster kubeconfig add {gateway.cluster['name']}"
    )
    expect(page.get_by_text("expires 15 minutes after you download it")).to_be_visible()
    for control in ("Create grant", "Revoke all access", "Delete"):
        expect(page.get_by_role("button", name=control)).to_have_count(0)
    expect(page.get_by_label("Member", exact=True)).to_have_count(0)
    save_screenshot(page, screenshots, "access-member")
    assert_accessible(page)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download kubeconfig").click()
    assert download.value.suggested_filename.endswith(".kubeconfig")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    config = yaml.safe_load(path.read_text())
    [cluster] = config["clusters"]
    assert cluster["cluster"]["server"].endswith(f"/clusters/{gateway.cluster_id}")
    assert config["users"][0]["user"]["token"].startswith("kg_kube_")

    version, binary = sorted(kubectl_binaries().items())[0]
    kubectl = Kubectl(version, binary)
    result = kubectl.run("get", "configmaps", "-n", "default", kubeconfig=path)
    assert result.returncode == 0, result.stderr
    refused = kubectl.run("get", "configmaps", "-n", "kube-system", kubeconfig=path)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    gateway.delete_grant(grant["id"])


def test_access_view_fits_a_375_pixel_screen(
    browser: Browser, gateway: Deployment, admin: Person, screenshots: Path
) -> None:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 375, "height": 740})
    try:
        page = context.new_page()
        sign_in(page, gateway, admin)
        open_access(page, gateway)
        expect(page.get_by_role("button", name="Create grant")).to_be_visible()

        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, width
        save_screenshot(page, screenshots, "access-admin-375px")
        assert_accessible(page)
    finally:
        with suppress(TargetClosedError):
            context.close()


def test_sandbox_cluster_says_it_has_no_cluster_access(
    gateway: Deployment, admin: Person, page: Page, screenshots: Path
) -> None:
    name = f"sandbox-{uuid.uuid4().hex[:6]}"
    with gateway.api() as client:
        made = client.post("/api/v1/clusters", json={"name": name, "kind": "sandbox"})
    assert made.status_code == 201, made.text
    sign_in(page, gateway, admin)
    page.get_by_role("link", name=name, exact=True).click()

    expect(page.locator(".kg-empty")).to_contain_text(
        "Sandbox clusters do not support Cluster Access"
    )
    expect(page.get_by_role("button", name="Create grant")).to_have_count(0)
    save_screenshot(page, screenshots, "access-sandbox")
    assert_accessible(page)


def test_gateway_off_says_cluster_access_is_unavailable(
    tmp_path: Path, page: Page, screenshots: Path
) -> None:
    server = GatewayServer(tmp_path / "server", extra_env={"KUBEGATE_GATEWAY_ENABLED": "false"})
    server.start()
    try:
        cluster = server.register_cluster(server.login(), "gateway-off")
        sign_in_at(page, server.url, Person(server.admin_email, server.admin_password))
        page.get_by_role("link", name="gateway-off", exact=True).click()
        page.wait_for_url(f"{server.url}/portal/clusters/{cluster['id']}")

        expect(page.locator(".kg-empty")).to_contain_text(
            "the access gateway is turned off on this server"
        )
        for control in ("Create grant", "Revoke all access", "Download kubeconfig"):
            expect(page.get_by_role("button", name=control)).to_have_count(0)
        save_screenshot(page, screenshots, "access-gateway-off")
        assert_accessible(page)
    finally:
        server.stop()
