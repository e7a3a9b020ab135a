"""The portal's whole journey, as people live it, in real Chromium through a real Dex.

A teammate (Alice) signs in with single sign-on and finds she has no access; an admin
(Olivia, an admin by her Dex group) signs in the same way, grants Alice ``edit`` on a
namespace and watches the grant turn ``applied`` without reloading. Alice's open page shows
her new access by itself; she downloads a kubeconfig and real kubectl works with it. The
admin deletes the grant: Alice's kubectl is refused at once, and her page says she has no
access any more. Everything runs against the real server, agent and apiserver.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from playwright.sync_api import Browser, Page, expect

from testenv.controlplane import Credentials
from testenv.dex import DexUser
from testenv.system import kubectl_binaries
from tests.fixtures.kube import Kubectl
from tests.fixtures.portal_browser import assert_accessible, save_screenshot, submit
from tests.fixtures.sso import ALICE, OLIVIA, SsoDeployment, running_sso_deployment

pytestmark = pytest.mark.e2e

# Applying a grant is the agent's reconcile after the server's notice: seconds, not minutes.
APPLIED_WITHIN_MS = 30_000
# An open Access view polls the viewer's own access every 5 s (REFRESH_SECONDS).
POLLED_WITHIN_MS = 15_000


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[SsoDeployment]:
    with running_sso_deployment(
        tmp_path_factory.mktemp("portal-journey"), kube_credentials, kube_admin
    ) as stack:
        yield stack


def sign_in_with_sso(page: Page, stack: SsoDeployment, person: DexUser) -> None:
    """From the Clusters page's address, through sign-in and Dex's own form, back to it."""
    server = stack.gateway.server
    page.goto(f"{server.url}/portal/clusters")
    page.get_by_role("link", name="Sign in with Dex").click()
    expect(page.locator("#login")).to_be_visible()
    assert page.url.startswith(stack.dex.credentials.issuer)  # Dex's origin, not kubegate's
    page.fill("#login", person.email)
    page.fill("#password", person.password)
    page.click("#submit-login")
    page.wait_for_url(f"{server.url}/portal/clusters")
    expect(page.locator(".kg-who")).to_contain_text(person.email)


def open_access(page: Page, stack: SsoDeployment) -> None:
    cluster = stack.gateway.cluster
    page.get_by_role("link", name=cluster["name"], exact=True).click()
    page.wait_for_url(f"{stack.gateway.server.url}/portal/clusters/{cluster['id']}")


def test_admin_grants_a_member_access_in_the_browser_then_takes_it_away(
    stack: SsoDeployment,
    browser: Browser,
    portal_page: Page,
    namespace: str,
    tmp_path: Path,
) -> None:
    version, binary = max(kubectl_binaries().items())
    kubectl = Kubectl(version, binary)

    # Alice signs in first (SSO makes her a member) and has no access yet.
    alice = portal_page
    sign_in_with_sso(alice, stack, ALICE)
    open_access(alice, stack)
    mine = alice.locator("#mine")
    expect(mine).to_contain_text("You do not have access to this cluster")

    # Olivia, an admin by her group, grants Alice edit on the namespace and watches it apply.
    olivia = browser.new_context(ignore_https_errors=True).new_page()
    try:
        sign_in_with_sso(olivia, stack, OLIVIA)
        expect(olivia.locator(".kg-role")).to_have_text("admin")
        open_access(olivia, stack)
        olivia.get_by_label("Member", exact=True).select_option(ALICE.email)
        olivia.get_by_label("Role").select_option("edit")
        olivia.get_by_label("Scope").select_option("namespace")
        olivia.get_by_label("Namespace").fill(namespace)
        submit(olivia, olivia.get_by_role("button", name="Create grant"), "created")
        row = olivia.locator(f"#grants tr[data-email='{ALICE.email}']")
        expect(row.locator("[data-status]")).to_have_attribute(
            "data-status", "applied", timeout=APPLIED_WITHIN_MS
        )
        save_screenshot(olivia, tmp_path, "journey-admin-applied")
        assert_accessible(olivia)

        # Alice's page, never reloaded, now shows her access and the download.
        expect(mine.locator("#my-access")).to_have_text(
            f"edit in namespace {namespace}", timeout=POLLED_WITHIN_MS
        )
        with alice.expect_download() as download:
            alice.get_by_role("button", name="Download kubeconfig").click()
        kubeconfig = tmp_path / download.value.suggested_filename
        download.value.save_as(kubeconfig)
        created = kubectl.run(
            "create", "configmap", "from-the-portal", "-n", namespace, kubeconfig=kubeconfig
        )
        assert created.returncode == 0, created.stderr
        listed = kubectl.run("get", "configmaps", "-n", namespace, kubeconfig=kubeconfig)
        assert listed.returncode == 0 and "from-the-portal" in listed.stdout, listed.stderr
        outside = kubectl.run("get", "configmaps", "-n", "kube-system", kubeconfig=kubeconfig)
        assert outside.returncode != 0 and "forbidden" in outside.stderr.lower(), outside.stderr

        # Olivia deletes the grant: Alice's downloaded kubeconfig stops working at once.
        submit(
            olivia,
            row.get_by_role("button", name=re.compile(f"^Delete edit grant of {ALICE.email}")),
            "deleted",
        )
        expect(olivia.locator(f"#grants tr[data-email='{ALICE.email}']")).to_have_count(0)
    finally:
        olivia.context.close()

    refused = kubectl.run("get", "configmaps", "-n", namespace, kubeconfig=kubeconfig)
    assert refused.returncode != 0, refused.stdout
    assert "You do not have access to this cluster" in refused.stderr, refused.stderr
    expect(mine).to_contain_text("You do not have access to this cluster", timeout=POLLED_WITHIN_MS)
