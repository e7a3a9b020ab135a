"""SSO in a real browser: Chromium signs in to kubegate through Dex's own login form.

kubegate runs as ``kubegate server`` (self-signed TLS, SQLite) with a real Dex as its
provider (tests/fixtures/sso.py); every test has a fresh browser context (own cookies). The
contexts accept both servers' self-signed certificates, as a person who trusted them would.
"""

from __future__ import annotations

import secrets
import urllib.parse
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from playwright._impl._errors import TargetClosedError
from playwright.sync_api import Browser, BrowserContext, Page, expect

from testenv.dex import DexUser
from testenv.processes import free_port
from tests.fixtures.sso import ALICE, BOB, EVE, MALLORY, Sso, kubegate_server

pytestmark = pytest.mark.e2e

SESSION = "__Host-kubegate_session"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile that accepts the test servers' certificates."""
    context = browser.new_context(ignore_https_errors=True)
    try:
        yield context
    finally:
        with suppress(TargetClosedError):
            context.close()


def sign_in(page: Page, sso: Sso, user: DexUser, next_path: str = "/org/session") -> None:
    """Go to kubegate's SSO sign-in and fill Dex's own login form as a person would."""
    url = f"{sso.kubegate.url}/auth/oidc/login?{urllib.parse.urlencode({'next': next_path})}"
    page.goto(url)
    expect(page.locator("#login")).to_be_visible()  # Dex's form, on Dex's origin
    assert page.url.startswith(sso.dex.credentials.issuer)
    page.fill("#login", user.email)
    page.fill("#password", user.password)
    page.click("#submit-login")


def session_cookie(context: BrowserContext) -> dict[str, Any] | None:
    for cookie in context.cookies():
        if cookie["name"] == SESSION:
            return dict(cookie)
    return None


def portal_user(context: BrowserContext, sso: Sso) -> dict[str, Any]:
    """``GET /org/session`` with the browser's cookies: who the portal says is signed in."""
    response = context.request.get(f"{sso.kubegate.url}/org/session")
    assert response.status == 200, response.text()
    user: dict[str, Any] = response.json()["user"]
    return user


def test_sign_in_through_dex_lands_in_kubegate_with_a_session(
    context: BrowserContext, sso: Sso
) -> None:
    page = context.new_page()

    sign_in(page, sso, ALICE, "/org/session")

    page.wait_for_url(f"{sso.kubegate.url}/org/session")
    cookie = session_cookie(context)
    assert cookie is not None
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/" and cookie["domain"] == "127.0.0.1"
    assert ALICE.email in page.content()  # the session document the page shows
    assert portal_user(context, sso)["email"] == ALICE.email


def test_second_sign_in_is_the_same_user(browser: Browser, sso: Sso) -> None:
    ids = []
    for _ in range(2):
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        sign_in(page, sso, ALICE)
        page.wait_for_url(f"{sso.kubegate.url}/org/session")
        ids.append(portal_user(context, sso)["id"])
        context.close()

    assert ids[0] == ids[1]


def test_existing_local_user_is_linked_not_duplicated(context: BrowserContext, sso: Sso) -> None:
    token = sso.kubegate.admin_token()
    with sso.kubegate.client() as api:
        created = api.post(
            "/api/v1/users",
            json={"email": BOB.email, "display_name": "Bob", "password": secrets.token_hex(12)},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
        page = context.new_page()

        sign_in(page, sso, BOB)
        page.wait_for_url(f"{sso.kubegate.url}/org/session")

        assert portal_user(context, sso)["id"] == created.json()["id"]
        listed = api.get(
            "/api/v1/users", params={"limit": 200}, headers={"Authorization": f"Bearer {token}"}
        ).json()["items"]
        assert [member["email"] for member in listed].count(BOB.email) == 1


def test_disallowed_domain_shows_its_page_and_sets_no_session(
    context: BrowserContext, sso: Sso
) -> None:
    page = context.new_page()
    with page.expect_response(lambda r: "/auth/oidc/callback" in r.url) as answer:
        sign_in(page, sso, MALLORY)

    assert answer.value.status == 403
    expect(page.locator("h1")).to_have_text("Your email domain may not sign in here")
    expect(page.locator("main")).to_contain_text("Accounts of other.test may not sign in")
    expect(page.get_by_role("link", name="Sign in again")).to_be_visible()
    assert session_cookie(context) is None


def test_unverified_email_shows_its_page_and_sets_no_session(
    context: BrowserContext, sso: Sso
) -> None:
    page = context.new_page()
    sign_in(page, sso, EVE)

    expect(page.locator("h1")).to_have_text("Your email address is not verified")
    assert session_cookie(context) is None


def test_user_cancel_shows_its_page(context: BrowserContext, sso: Sso) -> None:
    page = context.new_page()
    with page.expect_request(lambda r: r.url.startswith(sso.dex.credentials.issuer)) as sent:
        page.goto(f"{sso.kubegate.url}/auth/oidc/login")
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(sent.value.url).query)["state"][0]

    # Where a provider sends the browser when the person cancels (RFC 6749 §4.1.2.1); Dex's
    # own Cancel button keeps the browser on a Dex page instead.
    page.goto(f"{sso.kubegate.url}/auth/oidc/callback?error=access_denied&state={state}")

    expect(page.locator("h1")).to_have_text("Sign-in cancelled")
    expect(page.locator("main")).to_contain_text("You cancelled the sign-in at Dex")
    assert session_cookie(context) is None


def test_session_cookie_planted_before_sign_in_is_replaced(
    context: BrowserContext, sso: Sso
) -> None:
    planted = "kg_session_" + secrets.token_urlsafe(32)
    context.add_cookies(
        [
            {
                "name": SESSION,
                "value": planted,
                "url": sso.kubegate.url,
                "secure": True,
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )
    page = context.new_page()

    sign_in(page, sso, ALICE)
    page.wait_for_url(f"{sso.kubegate.url}/org/session")

    cookie = session_cookie(context)
    assert cookie is not None and cookie["value"] != planted
    assert portal_user(context, sso)["email"] == ALICE.email


def test_provider_down_shows_its_page(context: BrowserContext, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there: the provider is down
    oidc = {
        "issuer": f"https://127.0.0.1:{closed}/dex",
        "client_id": "kubegate",
        "client_secret": secrets.token_urlsafe(16),
        "display_name": "Dex",
    }
    with kubegate_server(tmp_path, oidc=oidc) as server:  # it starts all the same
        page = context.new_page()

        answer = page.goto(f"{server.url}/auth/oidc/login")

        assert answer is not None and answer.status == 502
        expect(page.locator("h1")).to_have_text("The sign-in provider cannot be reached")
        expect(page.locator("main")).to_contain_text(f"cannot reach Dex at {oidc['issuer']}")
        assert session_cookie(context) is None
