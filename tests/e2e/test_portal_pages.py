"""The portal's pages in real Chromium against a real ``kubegate server`` with a real agent.

A member with a password and a grant signs in through the sign-in page's form and sees the
deployment's cluster online on the Clusters page, with their access; a wrong password says
so; a visit without a session (none, signed out, or ended elsewhere) lands on sign-in. Every
page is checked for its security headers, for Content-Security-Policy violations in the
console (the page's own assets must all load under the strict policy) and by axe-core for
serious or critical accessibility violations; a screenshot of each is saved under the test
output (and into ``$KUBEGATE_PORTAL_SCREENSHOTS`` when set: ``docs/portal/``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from lightkube import Client
from playwright._impl._errors import TargetClosedError
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Response, expect

from testenv.controlplane import Credentials
from testenv.gateway import GatewayServer
from tests.fixtures.gateway import Deployment, running_deployment
from tests.fixtures.portal_browser import assert_accessible, save_screenshot

pytestmark = pytest.mark.e2e

SESSION = "__Host-kubegate_session"
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@dataclass(frozen=True)
class Member:
    email: str
    password: str
    user_id: str


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, kube_credentials: Credentials, kube_admin: Client
) -> Iterator[Deployment]:
    with running_deployment(
        tmp_path_factory.mktemp("portal"), kube_credentials, kube_admin
    ) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def member(gateway: Deployment) -> Member:
    """A member with a password and a view grant on the default namespace, applied."""
    email = f"m-{uuid.uuid4().hex[:8]}@example.com"
    password = uuid.uuid4().hex
    added = gateway.server.add_member(gateway.token, email, password)
    grant = gateway.grant(email, "view", "default")
    gateway.wait_status(grant["id"], "applied")
    return Member(email, password, added["id"])


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile that accepts the server's self-signed certificate."""
    context = browser.new_context(ignore_https_errors=True)
    try:
        yield context
    finally:
        with suppress(TargetClosedError):
            context.close()


@dataclass
class Watched:
    """A page, and the console errors it logged (CSP violations among them)."""

    page: Page
    console_errors: list[str]

    def csp_violations(self) -> list[str]:
        return [text for text in self.console_errors if "Content Security Policy" in text]


@pytest.fixture
def watched(context: BrowserContext) -> Watched:
    page = context.new_page()
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return Watched(page, errors)


def assert_page_headers(response: Response | None) -> None:
    assert response is not None
    headers = response.headers
    for name, value in PAGE_HEADERS.items():
        assert headers.get(name) == value, (name, headers.get(name))
    assert headers.get("cache-control") == "no-store"
    assert headers["content-type"].startswith("text/html")


def sign_in(page: Page, gateway: Deployment, member: Member, password: str | None = None) -> None:
    """Open the portal and fill its password form as a person would."""
    page.goto(gateway.server.url + "/")
    page.get_by_label("Email").fill(member.email)
    page.get_by_label("Password").fill(password if password is not None else member.password)
    page.get_by_role("button", name="Sign in").click()


def session_cookie(context: BrowserContext) -> str | None:
    return next((c["value"] for c in context.cookies() if c["name"] == SESSION), None)


def test_password_sign_in_shows_the_cluster_online_with_my_access(
    gateway: Deployment, member: Member, watched: Watched, screenshots: Path
) -> None:
    page = watched.page

    sign_in(page, gateway, member)

    page.wait_for_url(f"{gateway.server.url}/portal/clusters")
    expect(page.get_by_role("heading", name="Clusters", level=1)).to_be_visible()
    row = page.locator(f'tr[data-cluster="{gateway.cluster["name"]}"]')
    expect(row.get_by_role("rowheader")).to_have_text(gateway.cluster["name"])
    expect(row.locator(".kg-status")).to_have_text("Online")
    expect(row.locator('td[data-label="My access"]')).to_have_text("view in namespace default")
    seen = row.locator("time")
    moment = dt.datetime.fromisoformat(seen.get_attribute("datetime") or "")
    assert abs(dt.datetime.now(dt.UTC) - moment) < dt.timedelta(minutes=5)
    expect(seen).to_have_attribute("title", moment.strftime("%Y-%m-%d %H:%M:%S UTC"))
    expect(seen).to_have_text(re.compile(r"^(just now|\d+ minutes? ago)$"))
    expect(page.locator(".kg-who")).to_contain_text(member.email)
    save_screenshot(page, screenshots, "clusters")
    assert_accessible(page)
    assert watched.csp_violations() == []


def test_clusters_table_refreshes_itself_through_htmx_under_the_policy(
    gateway: Deployment, member: Member, watched: Watched
) -> None:
    page = watched.page
    sign_in(page, gateway, member)
    page.wait_for_url(f"{gateway.server.url}/portal/clusters")

    # The vendored htmx loaded from this origin and polls the table (every 5 s).
    with page.expect_response(lambda r: r.url.endswith("/portal/clusters/table"), timeout=15_000):
        pass

    expect(page.locator(f'tr[data-cluster="{gateway.cluster["name"]}"] .kg-status')).to_have_text(
        "Online"
    )
    assert watched.console_errors == []


def test_wrong_password_shows_a_readable_error_and_starts_no_session(
    gateway: Deployment,
    member: Member,
    watched: Watched,
    context: BrowserContext,
    screenshots: Path,
) -> None:
    page = watched.page
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        sign_in(page, gateway, member, password="not-the-password")

    assert answer.value.status == 401
    assert_page_headers(answer.value)
    expect(page.get_by_role("alert")).to_have_text(
        "The email or password is wrong. Check both and try again; if you forgot your "
        "password, ask one of your kubegate admins to set a new one."
    )
    expect(page.get_by_label("Email")).to_have_value(member.email)
    expect(page.get_by_label("Password")).to_have_value("")
    assert session_cookie(context) is None
    save_screenshot(page, screenshots, "sign-in-error")
    assert_accessible(page)
    assert watched.csp_violations() == []


def test_pages_and_assets_send_the_strict_headers_and_break_no_policy(
    gateway: Deployment, member: Member, watched: Watched
) -> None:
    page = watched.page
    assert_page_headers(page.goto(gateway.server.url + "/portal/sign-in"))
    with page.expect_response(
        lambda r: r.url.endswith("/portal/clusters") and r.status == 200
    ) as landed:
        sign_in(page, gateway, member)
    assert_page_headers(landed.value)
    expect(page.locator(".kg-status").first).to_be_visible()

    for asset, kind in (("portal.css", "text/css"), ("htmx.min.js", "javascript")):
        fetched = page.request.get(f"{gateway.server.url}/portal/static/{asset}")
        assert fetched.status == 200
        assert kind in fetched.headers["content-type"]
        assert fetched.headers["x-content-type-options"] == "nosniff"
    # The stylesheet applied (no inline style was needed, none was refused).
    assert page.locator(".kg-header").evaluate("e => getComputedStyle(e).display") == "flex"
    assert watched.csp_violations() == []


def test_signed_out_visit_to_clusters_lands_on_sign_in(
    gateway: Deployment, watched: Watched, screenshots: Path
) -> None:
    page = watched.page

    response = page.goto(gateway.server.url + "/portal/clusters")

    assert response is not None and response.ok
    assert page.url == f"{gateway.server.url}/portal/sign-in?next=%2Fportal%2Fclusters"
    assert_page_headers(response)
    expect(page.get_by_role("heading", name="Sign in to kubegate")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    save_screenshot(page, screenshots, "sign-in")
    assert_accessible(page)
    assert watched.csp_violations() == []


def test_sign_out_ends_the_session_and_lands_on_sign_in(
    gateway: Deployment, member: Member, watched: Watched, context: BrowserContext
) -> None:
    page = watched.page
    sign_in(page, gateway, member)
    page.wait_for_url(f"{gateway.server.url}/portal/clusters")
    ended = session_cookie(context)

    page.get_by_role("button", name="Sign out").click()

    page.wait_for_url(f"{gateway.server.url}/portal/sign-in?**")
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    assert session_cookie(context) is None
    # The old cookie is ended on the server, not only forgotten by the browser.
    with gateway.server.client() as client:
        assert (
            client.get("/org/session", headers={"Cookie": f"{SESSION}={ended}"}).status_code == 401
        )


def test_open_page_goes_to_sign_in_by_itself_when_the_session_is_ended(
    gateway: Deployment, member: Member, watched: Watched, screenshots: Path
) -> None:
    page = watched.page
    sign_in(page, gateway, member)
    page.wait_for_url(f"{gateway.server.url}/portal/clusters")

    # An admin ends the member's sessions; the page, left open, polls and is sent away.
    with gateway.api() as client:
        revoked = client.post(f"/api/v1/users/{member.user_id}/sessions/revoke")
    assert revoked.status_code == 200, revoked.text

    page.wait_for_url(f"{gateway.server.url}/portal/sign-in?**", timeout=15_000)
    expect(page.get_by_role("status")).to_contain_text("Your session has ended")
    save_screenshot(page, screenshots, "sign-in-session-ended")
    assert_accessible(page)


def test_clusters_page_fits_a_375_pixel_screen(
    browser: Browser, gateway: Deployment, member: Member, screenshots: Path
) -> None:
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 375, "height": 740})
    try:
        page = context.new_page()
        sign_in(page, gateway, member)
        page.wait_for_url(f"{gateway.server.url}/portal/clusters")
        expect(page.locator(".kg-status").first).to_have_text("Online")

        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, width
        expect(page.get_by_role("button", name="Sign out")).to_be_in_viewport()
        save_screenshot(page, screenshots, "clusters-375px")
        assert_accessible(page)
    finally:
        with suppress(TargetClosedError):
            context.close()


def test_idle_session_timeout_returns_an_open_page_to_sign_in(
    browser: Browser, tmp_path: Path, screenshots: Path
) -> None:
    # A server of its own (no cluster: the admin's empty state) whose sessions end after
    # 4 s unused; the page's own refreshes are no use, so the open page is sent away.
    server = GatewayServer(tmp_path / "idle", extra_env={"KUBEGATE_SESSION_IDLE_SECONDS": "4"})
    server.start()
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        page.get_by_label("Email").fill(server.admin_email)
        page.get_by_label("Password").fill(server.admin_password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{server.url}/portal/clusters")
        expect(page.get_by_role("heading", name="No clusters yet")).to_be_visible()
        expect(page.locator(".kg-empty")).to_contain_text("Register your first cluster")
        save_screenshot(page, screenshots, "clusters-empty-admin")
        assert_accessible(page)

        page.wait_for_url(f"{server.url}/portal/sign-in?**", timeout=20_000)
        expect(page.get_by_role("status")).to_contain_text("Your session has ended")
        assert session_cookie(context) is None
    finally:
        with suppress(TargetClosedError):
            context.close()
        server.stop()
