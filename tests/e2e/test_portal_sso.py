"""The portal's sign-in page with single sign-on on: its button goes through Dex and back.

kubegate (``kubegate server``, SQLite, TLS) has a real Dex as its provider
(tests/fixtures/sso.py) and no cluster registered, so the member lands on the Clusters
page's empty state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from playwright._impl._errors import TargetClosedError
from playwright.sync_api import Browser, BrowserContext, expect

from tests.fixtures.portal_browser import assert_accessible, save_screenshot
from tests.fixtures.sso import ALICE, Sso

pytestmark = pytest.mark.e2e


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(ignore_https_errors=True)
    try:
        yield context
    finally:
        with suppress(TargetClosedError):
            context.close()


def test_sso_button_signs_in_through_the_provider_and_lands_on_clusters(
    context: BrowserContext, sso: Sso, tmp_path: Path
) -> None:
    page = context.new_page()
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security" in m.text else None)
    page.goto(f"{sso.kubegate.url}/portal/clusters")
    button = page.get_by_role("link", name="Sign in with Dex")
    expect(button).to_be_visible()
    expect(page.get_by_label("Password")).to_be_visible()  # passwords are on here too
    save_screenshot(page, tmp_path, "sign-in-sso")
    assert_accessible(page)

    button.click()
    expect(page.locator("#login")).to_be_visible()  # Dex's own form, on Dex's origin
    page.fill("#login", ALICE.email)
    page.fill("#password", ALICE.password)
    page.click("#submit-login")

    page.wait_for_url(f"{sso.kubegate.url}/portal/clusters")
    expect(page.get_by_role("heading", name="No clusters yet")).to_be_visible()
    expect(page.locator(".kg-empty")).to_contain_text("Ask one of its admins to register yours")
    expect(page.locator(".kg-who")).to_contain_text(ALICE.email)
    save_screenshot(page, tmp_path, "clusters-empty")
    assert_accessible(page)
    assert csp == []
