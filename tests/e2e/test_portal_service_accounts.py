"""The service accounts page and cluster registration in real Chromium, against a real
server, agent and apiserver.

The admin creates a service account in the browser (the browser refuses a name that is not a
DNS-1123 label), watches it turn ``applied`` without the page reloading, downloads its
kubeconfig and real kubectl does with it what ``edit`` allows in its namespace and nothing
outside, then deletes it behind a confirmation. The admin registers a cluster and sees the
agent's install command and its credential once, copied by the copy button. Every page is
checked by axe-core and for CSP violations (the ``portal_page`` fixture), at 375 px too;
screenshots as in test_portal_access.py (``$KUBEGATE_PORTAL_SCREENSHOTS``).
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
        tmp_path_factory.mktemp("portal-service-accounts"), kube_credentials, kube_admin
    ) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def admin(gateway: Deployment) -> Person:
    return deployment_admin(gateway)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(portal_page: Page) -> Page:
    return portal_page


def kubectl() -> Kubectl:
    version, binary = sorted(kubectl_binaries().items())[0]
    return Kubectl(version, binary)


def test_admin_creates_a_service_account_uses_its_kubeconfig_and_deletes_it(
    gateway: Deployment,
    admin: Person,
    page: Page,
    screenshots: Path,
    namespace: str,
    tmp_path: Path,
) -> None:
    sign_in(page, gateway, admin)
    page.get_by_role("link", name="Service accounts").click()
    page.wait_for_url(f"{gateway.server.url}/portal/service-accounts")
    expect(page.locator("#service-accounts")).to_contain_text("No service accounts yet")
    save_screenshot(page, screenshots, "service-accounts-empty")
    assert_accessible(page)

    # The browser refuses a name that is not a DNS-1123 label: nothing is sent.
    name = page.get_by_label("Name", exact=True)
    name.fill("CI_Deployer")
    page.get_by_label("Namespace", exact=True).fill(namespace)
    page.get_by_label("Role", exact=True).select_option("edit")
    page.get_by_label("Scope", exact=True).select_option("namespace")
    page.get_by_role("button", name="Create service account").click()
    assert name.evaluate("e => e.validity.patternMismatch") is True
    expect(page.get_by_role("status")).to_have_count(0)

    name.fill("ci-deployer")
    submit(page, page.get_by_role("button", name="Create service account"), "created")
    expect(page.get_by_role("status")).to_contain_text("The service account was created.")
    row = page.locator('#service-accounts tr[data-name="ci-deployer"]')
    expect(row.locator('td[data-label="Namespace"]')).to_have_text(namespace)
    page.evaluate("window.kgNotReloaded = true")

    # The agent makes it; the polled fragment shows so, the page not reloaded.
    expect(row.locator("[data-status]")).to_have_text("applied", timeout=20_000)
    assert page.evaluate("window.kgNotReloaded") is True
    save_screenshot(page, screenshots, "service-accounts")
    assert_accessible(page)

    page.get_by_label("Its token lives").select_option(label="1 hour")
    page.get_by_label("It goes").select_option("gateway")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download kubeconfig").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == f"kubegate-{gateway.cluster['name']}-ci-deployer.kubeconfig"
    assert yaml.safe_load(path.read_text())["contexts"][0]["context"]["namespace"] == namespace
    tool = kubectl()
    made = tool.run("create", "configmap", "made-by-ci", kubeconfig=path)
    assert made.returncode == 0, made.stderr  # edit, in its own namespace (the context's)
    outside = tool.run("get", "configmaps", "-n", "kube-system", kubeconfig=path)
    assert outside.returncode != 0 and "forbidden" in outside.stderr.lower(), outside.stderr

    # Delete asks first, on a page of its own.
    page.get_by_role("link", name=f"Delete {namespace}/ci-deployer").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(
        f"Delete {namespace}/ci-deployer on {gateway.cluster['name']}?"
    )
    save_screenshot(page, screenshots, "service-account-delete")
    assert_accessible(page)
    submit(page, page.get_by_role("button", name="Delete service account"), "deleted")
    expect(page.get_by_role("status")).to_contain_text("The service account was deleted")
    expect(row).to_have_count(0)
    gone = tool.run("get", "configmaps", kubeconfig=path)
    assert gone.returncode != 0, gone.stdout


def test_admin_registers_a_cluster_and_sees_its_credential_once(
    gateway: Deployment,
    admin: Person,
    portal_context: BrowserContext,
    page: Page,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    portal_context.grant_permissions(["clipboard-read", "clipboard-write"])
    cluster_name = f"edge-{uuid.uuid4().hex[:6]}"
    sign_in(page, gateway, admin)
    page.get_by_role("link", name="Register a cluster").click()
    page.wait_for_url(f"{gateway.server.url}/portal/clusters/register")

    name = page.get_by_label("Name", exact=True)
    name.fill("Edge_1")
    page.get_by_role("button", name="Register cluster").click()
    assert name.evaluate("e => e.validity.patternMismatch") is True
    name.fill(cluster_name)
    save_screenshot(page, screenshots, "register")
    assert_accessible(page)

    page.get_by_role("button", name="Register cluster").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{cluster_name} is registered")
    credential = page.locator("#agent-credential").inner_text()
    assert credential.startswith("kg_agent_")
    expect(page.get_by_text("will not show it again")).to_be_visible()
    command = page.locator("#install-command")
    expect(command).to_contain_text(f"KUBEGATE_CLUSTER_TOKEN={credential}")
    expect(command).to_contain_text(f"kubegate cluster install-manifest {cluster_name}")
    expect(command).to_contain_text(f"--server {gateway.server.url} --ca-file kubegate-ca.crt")

    page.get_by_role("button", name="Copy the credential").click()
    expect(page.get_by_role("status").filter(has_text="Copied.")).to_have_count(1)
    assert page.evaluate("navigator.clipboard.readText()") == credential
    with page.expect_download() as download:
        page.get_by_role("link", name="download kubegate-ca.crt").click()
    ca = tmp_path / "kubegate-ca.crt"
    download.value.save_as(ca)
    assert ca.read_text() == gateway.server.ca_file.read_text()
    save_screenshot(page, screenshots, "register-done")
    assert_accessible(page)

    # Gone from every later page: the register page again, the Clusters page.
    page.get_by_role("link", name="Clusters page").click()
    expect(page.locator(f'tr[data-cluster="{cluster_name}"]')).to_contain_text("Offline")
    assert credential not in page.content()
    page.goto(f"{gateway.server.url}/portal/clusters/register")
    expect(page.get_by_role("button", name="Register cluster")).to_be_visible()
    assert credential not in page.content()
    with gateway.api() as client:
        [made] = client.get("/api/v1/clusters", params={"name": cluster_name}).json()["items"]
        assert client.delete(f"/api/v1/clusters/{made['id']}").status_code == 204


def test_the_pages_fit_a_375_pixel_screen(
    browser: Browser, gateway: Deployment, admin: Person, screenshots: Path, namespace: str
) -> None:
    path = f"/api/v1/clusters/{gateway.cluster_id}/service-accounts"
    account = gateway.server.call(
        gateway.token, "POST", path, {"name": "reporter", "namespace": namespace, "role": "view"}
    )
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 375, "height": 740})
    try:
        page = context.new_page()
        sign_in(page, gateway, admin)
        page.goto(f"{gateway.server.url}/portal/service-accounts")
        expect(page.locator('tr[data-name="reporter"] [data-status]')).to_have_text(
            "applied", timeout=20_000
        )
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, width
        save_screenshot(page, screenshots, "service-accounts-375px")
        assert_accessible(page)

        page.goto(f"{gateway.server.url}/portal/clusters/register")
        expect(page.get_by_role("button", name="Register cluster")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, width
    finally:
        with suppress(TargetClosedError):
            context.close()
        gateway.server.call(gateway.token, "DELETE", f"{path}/{account['id']}")


def test_a_member_is_told_why_neither_page_is_theirs(
    gateway: Deployment, page: Page, screenshots: Path
) -> None:
    sign_in(page, gateway, new_member(gateway))
    expect(page.get_by_role("link", name="Service accounts")).to_have_count(0)
    expect(page.get_by_role("link", name="Register a cluster")).to_have_count(0)

    page.goto(f"{gateway.server.url}/portal/service-accounts")
    expect(page.get_by_role("alert")).to_contain_text(
        "Only organisation admins manage service accounts, and you are a member"
    )
    expect(page.get_by_role("button", name="Create service account")).to_have_count(0)
    save_screenshot(page, screenshots, "service-accounts-refused")
    assert_accessible(page)

    page.goto(f"{gateway.server.url}/portal/clusters/register")
    expect(page.get_by_role("alert")).to_contain_text("Only organisation admins can register")
    expect(page.get_by_role("button", name="Register cluster")).to_have_count(0)
    assert_accessible(page)
