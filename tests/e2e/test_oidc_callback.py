"""The SSO callback against a real Dex, walked over HTTP so each test can stop at the callback
and do what an attacker would: replay it, carry it to another browser, change its state or
code, plant cookies, point ``next`` elsewhere. PKCE and nonce mismatches are injected by
changing the sign-in's stored verifier or nonce in kubegate's own database (a fault no honest
party can cause). Provisioning: once per person, local users linked, the admin group.
"""

from __future__ import annotations

import re
import secrets
import urllib.parse
from pathlib import Path
from typing import Any

import httpx
import pytest

from kubegate.auth.hashing import secret_hash
from tests.fixtures.sso import (
    ALICE,
    BOB,
    DAVE,
    EVE,
    MALLORY,
    OLIVIA,
    Sso,
    SsoClient,
    dex_oidc,
    kubegate_server,
)

pytestmark = pytest.mark.e2e

SESSION = "__Host-kubegate_session"
BROWSER = "__Host-kubegate_oidc"


def whoami(client: SsoClient) -> dict[str, Any]:
    """``GET /org/session`` with the client's session cookie: the signed-in user."""
    response = client.http.get(f"{client.server.url}/org/session")
    assert response.status_code == 200, response.text
    user: dict[str, Any] = response.json()["user"]
    return user


def assert_page(response: httpx.Response, status: int, code: str, *phrases: str) -> None:
    """An HTML failure page with ``status``, the error ``code`` and each phrase; no session."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert f'data-error="{code}"' in response.text
    for phrase in phrases:
        assert phrase in response.text, response.text
    assert SESSION not in response.headers.get("set-cookie", "")


def query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def with_query(url: str, **changes: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts._replace(query=urllib.parse.urlencode({**query(url), **changes})).geturl()


def pending_state_hash(sso: Sso) -> list[str]:
    with sso.kubegate.database() as db:
        return [row[0] for row in db.execute("SELECT state_hash FROM oidc_logins")]


def tamper(sso: Sso, callback: str, column: str, value: str) -> None:
    """Change the stored ``column`` of the sign-in the callback's state names (fault
    injection into kubegate's own database)."""
    state_hash = secret_hash(query(callback)["state"])
    with sso.kubegate.database() as db:
        changed = db.execute(
            f"UPDATE oidc_logins SET {column} = ? WHERE state_hash = ?", (value, state_hash)
        ).rowcount
    assert changed == 1


def audit(sso: Sso, action: str = "auth.oidc.login") -> list[dict[str, Any]]:
    token = sso.kubegate.admin_token()
    with sso.kubegate.client() as client:
        response = client.get(
            "/api/v1/audit",
            params={"action": action, "limit": 200},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["items"]
    return events


def members(sso: Sso) -> list[dict[str, Any]]:
    token = sso.kubegate.admin_token()
    with sso.kubegate.client() as client:
        response = client.get(
            "/api/v1/users", params={"limit": 200}, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["items"]
    return found


def test_sign_in_lands_on_next_with_a_working_portal_session(sso_client: SsoClient) -> None:
    callback = sso_client.callback_for(ALICE, "/org/session?x=1")

    landed = sso_client.finish(callback)

    assert landed.status_code == 302
    assert landed.headers["location"] == "/org/session?x=1"
    cookie = landed.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION}=") and "Secure" in cookie and "HttpOnly" in cookie
    assert "Path=/" in cookie and "samesite=lax" in cookie.lower() and "Domain" not in cookie
    assert whoami(sso_client)["email"] == ALICE.email


def test_login_binds_the_sign_in_to_this_browser_with_a_host_cookie(
    sso_client: SsoClient,
) -> None:
    started = sso_client.start("/")

    assert started.status_code == 302
    cookie = started.headers["set-cookie"]
    assert cookie.startswith(f"{BROWSER}=")
    for attribute in ("Secure", "HttpOnly", "Path=/", "Max-Age=600"):
        assert attribute in cookie
    assert "samesite=lax" in cookie.lower() and "Domain" not in cookie
    authorize = query(started.headers["location"])
    assert authorize["code_challenge_method"] == "S256"
    assert authorize["response_type"] == "code" and authorize["client_id"] == "kubegate"
    assert len(authorize["state"]) >= 43 and len(authorize["nonce"]) >= 43
    assert "groups" in authorize["scope"].split()


def test_person_is_provisioned_once(sso: Sso) -> None:
    ids = []
    for _ in range(2):
        client = sso.client()
        try:
            client.finish(client.callback_for(ALICE))
            ids.append(whoami(client)["id"])
        finally:
            client.close()

    assert ids[0] == ids[1]
    assert [m["email"] for m in members(sso)].count(ALICE.email) == 1


def test_local_user_with_the_same_email_is_linked_not_duplicated(
    sso: Sso, sso_client: SsoClient
) -> None:
    token = sso.kubegate.admin_token()
    password = secrets.token_urlsafe(16)
    with sso.kubegate.client() as api:
        created = api.post(
            "/api/v1/users",
            json={"email": "Bob@Example.com", "display_name": "Bob", "password": password},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text

        sso_client.finish(sso_client.callback_for(BOB))

        assert whoami(sso_client)["id"] == created.json()["id"]
        assert [m["email"] for m in members(sso)].count(BOB.email) == 1
        # The local password keeps working (password login is on here).
        login = api.post("/api/v1/auth/login", json={"email": BOB.email, "password": password})
        assert login.status_code == 200, login.text


def test_member_of_the_admin_group_signs_in_as_admin(sso_client: SsoClient) -> None:
    sso_client.finish(sso_client.callback_for(OLIVIA))

    assert whoami(sso_client)["role"] == "admin"


def test_admin_outside_the_admin_group_is_demoted_at_sign_in(sso: Sso) -> None:
    first = sso.client()
    first.finish(first.callback_for(ALICE))
    alice = whoami(first)
    first.close()
    token = sso.kubegate.admin_token()
    with sso.kubegate.client() as api:
        promoted = api.patch(
            f"/api/v1/users/{alice['id']}",
            json={"role": "admin"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert promoted.status_code == 200, promoted.text

    again = sso.client()
    again.finish(again.callback_for(ALICE))

    assert whoami(again)["role"] == "member"
    again.close()
    changes = [e["detail"].get("role") for e in audit(sso) if e["actor_email"] == ALICE.email]
    assert {"from": "admin", "to": "member"} in changes


def test_deactivated_member_is_refused_with_a_page(sso: Sso) -> None:
    first = sso.client()
    first.finish(first.callback_for(DAVE))
    dave = whoami(first)
    first.close()
    token = sso.kubegate.admin_token()
    with sso.kubegate.client() as api:
        off = api.patch(
            f"/api/v1/users/{dave['id']}",
            json={"is_active": False},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert off.status_code == 200, off.text

    again = sso.client()
    refused = again.finish(again.callback_for(DAVE))

    assert_page(refused, 403, "member_deactivated", "dave@example.com is deactivated")
    again.close()


def test_disallowed_domain_gets_its_page_and_no_session(sso: Sso, sso_client: SsoClient) -> None:
    refused = sso_client.finish(sso_client.callback_for(MALLORY))

    assert_page(refused, 403, "email_domain_not_allowed", "other.test", "@example.com")
    assert sso_client.session_cookie() is None
    assert MALLORY.email not in [m["email"] for m in members(sso)]
    failures = [e for e in audit(sso) if e["result"] == "failure"]
    assert any(e["detail"]["error"] == "email_domain_not_allowed" for e in failures)


def test_unverified_email_gets_its_page_and_no_session(sso_client: SsoClient) -> None:
    refused = sso_client.finish(sso_client.callback_for(EVE))

    assert_page(refused, 403, "email_unverified", "eve@example.com", "not verified")
    assert sso_client.session_cookie() is None


def test_user_cancel_at_the_provider_gets_its_page(sso: Sso, sso_client: SsoClient) -> None:
    # Dex's own Cancel (on its approval screen) stays inside Dex; other providers redirect
    # back with error=access_denied (RFC 6749 §4.1.2.1), which is what this sends.
    started = sso_client.start("/")
    state = query(started.headers["location"])["state"]

    cancelled = sso_client.http.get(
        f"{sso.kubegate.url}/auth/oidc/callback",
        params={"error": "access_denied", "error_description": "<b>x</b>", "state": state},
    )

    assert_page(cancelled, 403, "sign_in_cancelled", "You cancelled the sign-in at Dex")
    assert "<b>x</b>" not in cancelled.text
    assert secret_hash(state) not in pending_state_hash(sso)  # that sign-in is over


def test_replayed_callback_is_refused(sso_client: SsoClient) -> None:
    callback = sso_client.callback_for(ALICE)
    assert sso_client.finish(callback).status_code == 302

    replayed = sso_client.finish(callback)

    assert_page(replayed, 400, "sign_in_expired", "expired or was already used")


def test_callback_carried_to_another_browser_is_refused(sso: Sso) -> None:
    victim, attacker = sso.client(), sso.client()
    try:
        # Login CSRF: the attacker signs in as themselves and hands the victim the callback.
        callback = attacker.callback_for(ALICE)
        refused = victim.finish(callback)
        assert_page(refused, 400, "sign_in_wrong_browser", "started in another browser")
        assert victim.session_cookie() is None
        # The rightful browser can still finish it.
        assert attacker.finish(callback).status_code == 302
    finally:
        victim.close()
        attacker.close()


def test_browser_cookie_planted_from_elsewhere_is_refused(sso: Sso) -> None:
    owner, other = sso.client(), sso.client()
    try:
        callback = owner.callback_for(ALICE)
        other.start("/")  # a sign-in of its own, with its own cookie
        assert other.http.cookies.get(BROWSER) != owner.http.cookies.get(BROWSER)
        assert_page(other.finish(callback), 400, "sign_in_wrong_browser")

        forged = sso.client()
        forged.http.cookies.set(BROWSER, secrets.token_urlsafe(32), domain="127.0.0.1")
        assert_page(forged.finish(callback), 400, "sign_in_wrong_browser")
        forged.close()
    finally:
        owner.close()
        other.close()


def test_unknown_state_is_refused(sso_client: SsoClient) -> None:
    callback = sso_client.callback_for(ALICE)

    refused = sso_client.finish(with_query(callback, state=secrets.token_urlsafe(32)))

    assert_page(refused, 400, "sign_in_expired")


@pytest.mark.parametrize("field", ["code", "state", "error"])
def test_an_oversized_callback_gets_the_page_not_json(sso_client: SsoClient, field: str) -> None:
    callback = sso_client.callback_for(ALICE)

    refused = sso_client.finish(with_query(callback, **{field: "a" * 4096}))

    assert_page(refused, 400, "sign_in_expired", "too long")


def test_code_from_another_sign_in_fails_pkce_at_the_provider(sso_client: SsoClient) -> None:
    # The same browser starts two sign-ins; the code of the first arrives with the state of
    # the second: kubegate sends the second's verifier and Dex refuses the exchange.
    first = sso_client.callback_for(ALICE)
    second = sso_client.callback_for(ALICE)

    refused = sso_client.finish(with_query(first, state=query(second)["state"]))

    assert_page(refused, 400, "provider_refused", "Dex refused to complete the sign-in")
    assert sso_client.session_cookie() is None


def test_pkce_verifier_mismatch_is_refused_by_the_provider(sso: Sso, sso_client: SsoClient) -> None:
    callback = sso_client.callback_for(ALICE)
    tamper(sso, callback, "code_verifier", secrets.token_urlsafe(48))

    refused = sso_client.finish(callback)

    assert_page(refused, 400, "provider_refused", "Dex refused to complete the sign-in")
    assert sso_client.session_cookie() is None


def test_made_up_code_is_refused_by_the_provider(sso_client: SsoClient) -> None:
    callback = sso_client.callback_for(ALICE)

    refused = sso_client.finish(with_query(callback, code="forged" + secrets.token_hex(8)))

    assert_page(refused, 400, "provider_refused")


def test_nonce_mismatch_is_refused_with_a_reference(sso: Sso, sso_client: SsoClient) -> None:
    callback = sso_client.callback_for(ALICE)
    tamper(sso, callback, "nonce", secrets.token_urlsafe(32))

    refused = sso_client.finish(callback)

    assert_page(refused, 401, "id_token_rejected", "could not verify")
    assert "nonce" not in refused.text  # details only in the log
    reference = re.search(r"Reference: <code>([0-9a-f]+)</code>", refused.text)
    assert reference
    logged = [line for line in sso.kubegate.log_text().splitlines() if reference[1] in line]
    assert any("nonce" in line and "OIDC sign-in failed" in line for line in logged), logged


@pytest.mark.parametrize(
    "next_path",
    ["//evil.example.com/x", "https://evil.example.com/", "/\\evil.example.com", "evil", ""],
)
def test_next_outside_this_server_lands_on_the_root(sso_client: SsoClient, next_path: str) -> None:
    landed = sso_client.finish(sso_client.callback_for(ALICE, next_path))

    assert landed.status_code == 302
    assert landed.headers["location"] == "/"


def test_session_cookie_set_before_sign_in_is_not_the_one_after(
    sso: Sso, sso_client: SsoClient
) -> None:
    planted = sso.client()
    planted.finish(planted.callback_for(ALICE))
    fixed = planted.session_cookie()
    assert fixed is not None
    # The victim's browser gets the attacker's (valid) session cookie, then signs in.
    sso_client.http.cookies.set(SESSION, fixed, domain="127.0.0.1")

    sso_client.finish(sso_client.callback_for(OLIVIA))

    assert sso_client.session_cookie() not in (None, fixed)
    assert whoami(sso_client)["email"] == OLIVIA.email
    gone = planted.http.get(f"{sso.kubegate.url}/org/session")
    assert gone.status_code == 401  # the planted session was ended by the sign-in
    planted.close()


def test_log_and_audit_never_hold_a_code_or_token(sso: Sso, sso_client: SsoClient) -> None:
    callback = sso_client.callback_for(ALICE)
    sso_client.finish(callback)
    secrets_seen = [query(callback)["code"], query(callback)["state"], sso_client.session_cookie()]

    text = sso.kubegate.log_text() + repr(audit(sso))

    for value in secrets_seen:
        assert value and value not in text
    assert "eyJ" not in text  # no JWT (ID token) either


def test_issuer_that_is_not_the_providers_own_is_refused_with_a_page(
    sso: Sso, tmp_path: Path
) -> None:
    # Dex's certificate is valid for localhost too, but its issuer is the 127.0.0.1 URL.
    issuer = sso.dex.credentials.issuer.replace("127.0.0.1", "localhost")
    oidc = dex_oidc(sso.dex, issuer=issuer)
    with kubegate_server(tmp_path, oidc=oidc, dex=sso.dex) as other, other.client() as client:
        refused = client.get("/auth/oidc/login")

    assert_page(refused, 502, "provider_misconfigured", "names the issuer", "oidc.issuer")
