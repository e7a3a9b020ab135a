"""The sign-in failure pages: escaped, script-free, uncacheable, generic for bad tokens."""

from __future__ import annotations

from kubegate.auth.oidc_errors import DomainNotAllowed, IdTokenRejected, SsoNotConfigured
from kubegate.server.oidc_pages import GENERIC, failure_page


def test_every_value_on_the_page_is_escaped() -> None:
    page = failure_page(
        DomainNotAllowed("Accounts of <script>alert(1)</script> may not sign in"),
        reference='"><img src=x>',
        next_path='/"onmouseover="x',
    )
    body = bytes(page.body).decode()

    assert "<script>" not in body and "<img" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "%22onmouseover%3D%22x" in body  # next, URL-encoded inside the escaped link
    assert "<meta" not in body and "style=" not in body


def test_page_is_never_cached_framed_or_referred() -> None:
    page = failure_page(DomainNotAllowed("no"), reference="r")

    assert page.status_code == 403
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'none'
    assert page.headers["content-type"] == "text/html; charset=utf-8"


def test_a_rejected_token_shows_a_generic_sentence_and_the_reference() -> None:
    page = failure_page(IdTokenRejected("the ID token's nonce is not ..."), reference="ab12")
    body = bytes(page.body).decode()

    assert page.status_code == 401
    assert GENERIC in body and "nonce" not in body
    assert "<code>ab12</code>" in body


def test_without_sso_the_page_offers_no_sign_in_link() -> None:
    body = bytes(failure_page(SsoNotConfigured("none here"), reference="r").body).decode()

    assert "/auth/oidc/login" not in body
