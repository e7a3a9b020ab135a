"""The Access keys page and the admin kubeconfig page in real Chromium, against a real
server, agent and apiserver.

A member makes an access key limited to one namespace, copies it with the page's button
(the clipboard holds it), and real kubectl works with a kubeconfig the key takes; back on
the page the key is listed and its secret is nowhere; the member deletes it and it stops
working. An admin holding cluster-admin follows the Access view's link to the admin
kubeconfig, reads the warning, downloads it, and real kubectl reaches the apiserver
directly as cluster-admin; the issuance is in the audit log. A member is refused the page
with the reason. Every page is checked by axe-core, for CSP violations (the ``portal_page``
fixture) and at 375 px; screenshots as in test_portal_pages.py
(``$KUBEGATE_PORTAL_SCREENSHOTS``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ServiceAccount as KubeServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding
from playwright.sync_api import BrowserContext, Page, expect

from kubegate.agent.tokens import BREAK_GLASS_NAME
from testenv.controlplane import Credentials
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
    submit,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[Deployment]:
    with running_deployment(
        tmp_path_factory.mktemp("portal-keys"), kube_credentials, kube_admin
    ) as deployment:
        yield deployment
    # The break-glass account is the agent's, made on demand and never reconciled away: the
    # shared control plane must not keep a cluster admin.
    with contextlib.suppress(ApiError):
        kube_admin.delete(ClusterRoleBinding, BREAK_GLASS_NAME)
    with contextlib.suppress(ApiError):
        kube_admin.delete(KubeServiceAccount, BREAK_GLASS_NAME, namespace="kube-system")


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(portal_page: Page) -> Page:
    return portal_page


@pytest.fixture(scope="module")
def kubectl() -> Kubectl:
    version, binary = sorted(kubectl_binaries().items())[0]
    return Kubectl(version, binary)


def fits_375_pixels(page: Page, screenshots: Path, name: str) -> None:
    """The page as it is now reads at 375 px wide without scrolling sideways."""
    size = page.viewport_size
    page.set_viewport_size({"width": 375, "height": 740})
    try:
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, width
        save_screenshot(page, screenshots, name)
    finally:
        if size is not None:
            page.set_viewport_size(size)


def test_a_member_creates_copies_uses_and_deletes_an_access_key(
    gateway: Deployment,
    page: Page,
    portal_context: BrowserContext,
    kubectl: Kubectl,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    member = new_member(gateway)
    grant = gateway.grant(member.email, "view", None)
    portal_context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=gateway.server.url
    )
    sign_in(page, gateway, member)
    page.get_by_role("link", name="Access keys").click()
    page.wait_for_url(f"{gateway.server.url}/portal/access-keys")
    expect(page.locator("#no-keys")).to_contain_text("Make one below")
    save_screenshot(page, screenshots, "access-keys-empty")
    assert_accessible(page)

    page.get_by_label("Name", exact=True).fill("ci-deploy")
    page.get_by_label("Expires", exact=True).select_option("30")
    page.get_by_label("Only the clusters ticked below").check()
    page.get_by_label(gateway.cluster["name"], exact=True).check()
    page.get_by_label(f"Namespaces on {gateway.cluster['name']}").fill("default")
    with page.expect_response(lambda r: r.url.endswith("/portal/access-keys")) as answer:
        page.get_by_role("button", name="Create access key").click()
    assert answer.value.status == 201
    expect(page.get_by_text("you will not see it again")).to_be_visible()
    secret = page.locator("#new-key-secret").inner_text().strip()
    assert re.fullmatch(r"kgak_\S+", secret), secret
    page.get_by_role("button", name="Copy the key").click()
    expect(page.locator("#copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    save_screenshot(page, screenshots, "access-keys-created")
    assert_accessible(page)

    # The key works: a kubeconfig taken with it, and real kubectl, within its namespace only.
    gateway.wait_status(str(grant["id"]), "applied")
    config = tmp_path / "key.kubeconfig"
    config.write_text(gateway.server.kubeconfig(secret, gateway.cluster_id))
    listed = kubectl.run("get", "configmaps", "-n", "default", kubeconfig=config)
    assert listed.returncode == 0, listed.stderr
    outside = kubectl.run("get", "configmaps", "-n", "kube-system", kubeconfig=config)
    assert outside.returncode != 0 and "forbidden" in outside.stderr.lower(), outside.stderr

    # Back on the page: the key is listed, its secret is nowhere.
    page.goto(f"{gateway.server.url}/portal/access-keys")
    row = page.locator('tr[data-key="ci-deploy"]')
    expect(row.locator('td[data-label="Scope"]')).to_have_text(
        f"{gateway.cluster['name']}: namespaces default"
    )
    expect(row.locator('td[data-label="Last used"]')).not_to_have_text("never")
    assert secret not in page.content()
    save_screenshot(page, screenshots, "access-keys")
    assert_accessible(page)
    fits_375_pixels(page, screenshots, "access-keys-375px")

    page.get_by_role("link", name="Delete access key ci-deploy").click()
    expect(page.get_by_role("heading", name="Delete access key “ci-deploy”?")).to_be_visible()
    save_screenshot(page, screenshots, "access-key-delete")
    assert_accessible(page)
    submit(page, page.get_by_role("button", name="Delete the key"), "deleted")
    expect(page.get_by_role("status")).to_contain_text("The access key was deleted.")
    expect(row).to_have_count(0)
    with gateway.server.client(secret) as client:
        assert client.get("/api/v1/me").status_code == 401
    gateway.delete_grant(str(grant["id"]))


def test_the_admin_kubeconfig_warns_downloads_and_works_with_kubectl_directly(
    gateway: Deployment, page: Page, kubectl: Kubectl, screenshots: Path, tmp_path: Path
) -> None:
    admin: Person = deployment_admin(gateway)
    grant = gateway.grant(admin.email, "cluster-admin", None)
    sign_in(page, gateway, admin)
    page.get_by_role("link", name=gateway.cluster["name"], exact=True).click()
    page.get_by_role("link", name="Take the admin kubeconfig").click()
    page.wait_for_url(f"{gateway.server.url}/portal/clusters/{gateway.cluster_id}/admin-kubeconfig")
    warning = page.locator("#break-glass-warning")
    expect(warning).to_contain_text("bypassing kubegate's proxy")
    expect(warning).to_contain_text("Taking it is recorded in the audit log")
    expect(warning).to_contain_text("listed to every admin")
    expect(warning).to_contain_text("It lasts 1 hour unless you choose otherwise")
    save_screenshot(page, screenshots, "admin-kubeconfig")
    assert_accessible(page)
    fits_375_pixels(page, screenshots, "admin-kubeconfig-375px")

    page.get_by_label("Token lifetime").select_option(label="30 minutes")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the admin kubeconfig (audited)").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    config = yaml.safe_load(path.read_text())
    server = config["clusters"][0]["cluster"]["server"]
    assert not server.startswith(gateway.server.url), server  # the apiserver itself
    can_i = kubectl.run("auth", "can-i", "*", "*", "--all-namespaces", kubeconfig=path)
    assert can_i.stdout.strip() == "yes", can_i.stderr
    namespaces = kubectl.run("get", "namespaces", kubeconfig=path)
    assert "kube-system" in namespaces.stdout, namespaces.stderr

    events = gateway.server.call(
        gateway.token, "GET", "/api/v1/audit?action=cluster.admin_kubeconfig"
    )["items"]
    assert ("success", admin.email) in [(e["result"], e["actor_email"]) for e in events]
    gateway.delete_grant(str(grant["id"]))

    # An admin's Access keys page offers anyone's keys to see (and delete).
    page.get_by_role("link", name="Access keys").click()
    expect(page.get_by_label("Show the keys of")).to_contain_text(f"{admin.email} (you)")
    assert_accessible(page)
    fits_375_pixels(page, screenshots, "access-keys-admin-375px")


def test_a_member_is_refused_the_admin_kubeconfig_with_the_reason(
    gateway: Deployment, page: Page, screenshots: Path
) -> None:
    member = new_member(gateway)
    grant = gateway.grant(member.email, "cluster-admin", None)
    sign_in(page, gateway, member)
    page.get_by_role("link", name=gateway.cluster["name"], exact=True).click()
    expect(page.get_by_role("heading", name="My access")).to_be_visible()
    expect(page.get_by_role("link", name="Take the admin kubeconfig")).to_have_count(0)

    answer = page.goto(
        f"{gateway.server.url}/portal/clusters/{gateway.cluster_id}/admin-kubeconfig"
    )
    assert answer is not None and answer.status == 403
    expect(page.get_by_role("alert")).to_contain_text(
        "Only organisation admins can take the admin kubeconfig"
    )
    expect(page.get_by_role("button", name=re.compile("Download"))).to_have_count(0)
    save_screenshot(page, screenshots, "admin-kubeconfig-refused")
    assert_accessible(page)
    gateway.delete_grant(str(grant["id"]))
