"""The Members and Audit pages in real Chromium against a real server and agent.

An admin adds a member in the browser, makes them an admin, ends their sessions (the
member's own browser, signed in beside, lands on sign-in at its next page) and deactivates
them; the Audit page shows those actions, its filter narrows the table to one action, *Follow
live* shows an event made after the page opened without a reload, and *Export* downloads the
filtered events as JSON lines. A member asking for the Members page is told they cannot.
Every page is checked by axe-core and for CSP violations, and at 375 px wide; screenshots as
in test_portal_pages.py (``$KUBEGATE_PORTAL_SCREENSHOTS``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from lightkube import Client
from playwright._impl._errors import TargetClosedError
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from testenv.controlplane import Credentials
from tests.fixtures.gateway import Deployment, running_deployment
from tests.fixtures.portal_browser import (
    Person,
    assert_accessible,
    deployment_admin,
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
        tmp_path_factory.mktemp("portal-members-audit"), kube_credentials, kube_admin
    ) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def admin(gateway: Deployment) -> Person:
    return deployment_admin(gateway)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@contextmanager
def other_browser(browser: Browser, width: int = 1280) -> Iterator[Page]:
    """A page in a browser profile of its own, failing on a CSP violation like
    ``portal_page``."""
    context = browser.new_context(
        ignore_https_errors=True, accept_downloads=True, viewport={"width": width, "height": 800}
    )
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    try:
        page = context.new_page()
        page.on("console", on_console)
        yield page
    finally:
        with suppress(TargetClosedError):
            context.close()
    assert [e for e in errors if "Content Security Policy" in e] == []


def fits_375(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, width


def test_admin_manages_a_member_and_the_audit_page_shows_it(
    gateway: Deployment,
    admin: Person,
    portal_page: Page,
    browser: Browser,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    page = portal_page
    base = gateway.server.url
    sign_in(page, gateway, admin)
    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members", level=1)).to_be_visible()
    expect(page.get_by_text("You are the only member so far")).to_be_visible()
    save_screenshot(page, screenshots, "members-alone")
    assert_accessible(page)

    # Add a member with a password.
    person = Person(f"p-{uuid.uuid4().hex[:8]}@example.com", uuid.uuid4().hex)
    page.get_by_label("Email", exact=True).fill(person.email)
    page.get_by_label("Name", exact=True).fill("Pat Example")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_label("Password", exact=True).fill(person.password)
    submit(page, page.get_by_role("button", name="Add member"), "added")
    expect(page.get_by_role("status")).to_contain_text("The member was added.")
    row = page.locator(f'tr[data-member="{person.email}"]')
    expect(row.locator('td[data-label="Role"]')).to_have_text("member")
    expect(row.locator('td[data-label="Signs in with"]')).to_have_text("password")

    with other_browser(browser) as theirs:
        # They sign in beside; the Members page is not theirs.
        sign_in(theirs, gateway, person)
        theirs.goto(f"{base}/portal/members")
        expect(theirs.get_by_role("alert")).to_contain_text(
            "Only organisation admins can list users: you are a member"
        )
        save_screenshot(theirs, screenshots, "members-refused")
        assert_accessible(theirs)

        # Make them an admin.
        page.get_by_label(f"Role of {person.email}", exact=True).select_option("admin")
        submit(page, page.get_by_role("button", name=f"Change role of {person.email}"), "role")
        expect(row.locator('td[data-label="Role"]')).to_have_text("admin")
        expect(row.locator('td[data-label="Last seen"] time')).to_have_text("just now")

        # End their sessions: their next page is sign-in.
        submit(page, page.get_by_role("button", name=f"End sessions of {person.email}"), "sessions")
        expect(page.get_by_role("status")).to_contain_text("Their sessions and CLI logins ended")
        theirs.goto(f"{base}/portal/clusters")
        theirs.wait_for_url(f"{base}/portal/sign-in?*")
        expect(theirs.get_by_role("status")).to_contain_text("Your session has ended")

    submit(page, page.get_by_role("button", name=f"Deactivate {person.email}"), "deactivated")
    expect(row.locator('td[data-label="State"]')).to_have_text("deactivated")
    expect(page.get_by_role("button", name=f"Reactivate {person.email}")).to_be_visible()
    save_screenshot(page, screenshots, "members")
    assert_accessible(page)

    # The audit log shows what was done.
    page.get_by_role("link", name="Audit").click()
    expect(page.get_by_role("heading", name="Audit", level=1)).to_be_visible()
    for action in ("user.add", "user.update", "user.sessions_revoke"):
        expect(page.locator(f'#audit tr[data-action="{action}"]').first).to_be_visible()
    expect(page.locator('#audit tr[data-action="user.add"]').first).to_contain_text(person.email)
    save_screenshot(page, screenshots, "audit")
    assert_accessible(page)

    # Filtering narrows it to one action, in a shareable address.
    page.get_by_label("Action", exact=True).fill("user.update")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url("**/portal/audit?*action=user.update*")
    rows = page.locator("#audit tbody tr")
    expect(rows).to_have_count(2)  # the role change and the deactivation
    expect(page.locator('#audit tbody tr:not([data-action="user.update"])')).to_have_count(0)

    # Follow live: an event made after the page opened appears without a reload.
    page.get_by_role("link", name="Follow live").click()
    expect(page.locator("#following")).to_be_visible()
    page.evaluate("window.kgNotReloaded = true")
    with gateway.api() as client:
        users = client.get("/api/v1/users").json()["items"]
        [their_id] = [u["id"] for u in users if u["email"] == person.email]
        made = client.patch(f"/api/v1/users/{their_id}", json={"is_active": True})
    assert made.status_code == 200, made.text
    expect(rows).to_have_count(3, timeout=15_000)
    expect(rows.first).to_contain_text(person.email)
    assert page.evaluate("window.kgNotReloaded") is True
    save_screenshot(page, screenshots, "audit-following")
    assert_accessible(page)

    # Export: the filtered events as JSON lines.
    with page.expect_download() as download:
        page.get_by_role("link", name="Export as JSON lines").click()
    assert download.value.suggested_filename.endswith(".jsonl")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 3 and {e["action"] for e in lines} == {"user.update"}
    assert lines[-1]["detail"]["changes"] == {"is_active": {"from": False, "to": True}}


def test_members_and_audit_fit_a_375_pixel_screen(
    gateway: Deployment, admin: Person, browser: Browser, screenshots: Path
) -> None:
    with other_browser(browser, width=375) as page:
        sign_in(page, gateway, admin)
        for name in ("members", "audit"):
            page.goto(f"{gateway.server.url}/portal/{name}")
            expect(page.get_by_role("heading", level=1)).to_have_text(name.title())
            fits_375(page)
            save_screenshot(page, screenshots, f"{name}-375px")
            assert_accessible(page)
