"""The portal's pages over HTTP: sign-in form, login CSRF, sign-out, redirects, gateway off.

The browser tests (tests/e2e/test_portal_pages.py) drive the same pages in Chromium; these
cover what a browser would not send on its own: a cross-site post, a forged ``next``, a
sign-out without the form's CSRF token. The session cookie is Secure, so it travels in an
explicit ``Cookie`` header on these plain-HTTP requests.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from kubegate.server.app import create_app
from kubegate.server.routers import portal_pages
from kubegate.settings import Settings
from tests.fixtures.access import MEMBER_EMAIL, MEMBER_PASSWORD, add_cluster, add_user, org_id_of
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api, ServerThread, make_settings
from tests.fixtures.portal import COOKIE

SIGN_IN = "/portal/sign-in"


def post_sign_in(
    client: httpx.Client, headers: dict[str, str] | None = None, **fields: str
) -> httpx.Response:
    form = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, **fields}
    return client.post(SIGN_IN, data=form, headers=headers or {"Sec-Fetch-Site": "same-origin"})


def session_of(response: httpx.Response) -> str:
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}="), cookie
    return cookie.split(";")[0].split("=", 1)[1]


def test_sign_in_form_starts_a_session_and_goes_to_next(api: Api) -> None:
    answer = post_sign_in(api.client, next="/portal/clusters?x=1")

    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/clusters?x=1"
    session = api.client.get("/org/session", headers={"Cookie": f"{COOKIE}={session_of(answer)}"})
    assert session.status_code == 200 and session.json()["user"]["email"] == ADMIN_EMAIL


def test_sign_in_never_redirects_to_another_origin(api: Api) -> None:
    for forged in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        answer = post_sign_in(api.client, next=forged)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/", forged


def test_cross_site_sign_in_form_is_refused_without_a_session(api: Api) -> None:
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        answer = post_sign_in(api.client, headers)

        assert answer.status_code == 403, headers
        assert "set-cookie" not in answer.headers
        assert "was not sent from kubegate&#39;s own page" in answer.text


def test_sign_in_form_from_this_origin_by_origin_header_is_accepted(api: Api) -> None:
    answer = post_sign_in(api.client, {"Origin": api.url})
    assert answer.status_code == 303 and "set-cookie" in answer.headers


def test_empty_fields_ask_for_both(api: Api) -> None:
    answer = post_sign_in(api.client, password="")
    assert answer.status_code == 400
    assert "Enter your email and password." in answer.text


def test_sign_out_without_the_forms_csrf_token_signs_nothing_out(api: Api) -> None:
    cookie = {"Cookie": f"{COOKIE}={session_of(post_sign_in(api.client))}"}

    refused = api.client.post("/portal/sign-out", data={"csrf_token": "kg_csrf_0"}, headers=cookie)

    assert refused.status_code == 303 and refused.headers["location"] == "/portal/clusters"
    assert api.client.get("/org/session", headers=cookie).status_code == 200


def test_sign_out_with_the_token_ends_the_session(api: Api) -> None:
    secret = session_of(post_sign_in(api.client))
    cookie = {"Cookie": f"{COOKIE}={secret}"}
    csrf = api.client.get("/org/session", headers=cookie).json()["csrf_token"]

    answer = api.client.post("/portal/sign-out", data={"csrf_token": csrf}, headers=cookie)

    assert answer.status_code == 303
    assert answer.headers["location"].startswith(f"{SIGN_IN}?")
    assert api.client.get("/org/session", headers=cookie).status_code == 401


def test_pages_without_a_session_redirect_and_fragments_say_hx_redirect(api: Api) -> None:
    page = api.client.get("/portal/clusters")
    assert page.status_code == 303
    assert page.headers["location"] == f"{SIGN_IN}?next=%2Fportal%2Fclusters"

    ended = api.client.get(
        "/portal/clusters/table",
        headers={"HX-Request": "true", "Cookie": f"{COOKIE}=kg_session_gone"},
    )
    assert ended.status_code == 401
    assert ended.headers["hx-redirect"] == f"{SIGN_IN}?next=%2Fportal%2Fclusters&ended=expired"
    assert ended.headers["set-cookie"].startswith(f'{COOKIE}=""')


def test_home_goes_to_clusters(api: Api) -> None:
    answer = api.client.get("/")
    assert answer.status_code == 303 and answer.headers["location"] == "/portal/clusters"


def test_clusters_page_says_when_cluster_access_is_off(gateway_off: Api) -> None:
    add_cluster(gateway_off, "prod")
    secret = session_of(post_sign_in(gateway_off.client))

    page = gateway_off.client.get("/portal/clusters", headers={"Cookie": f"{COOKIE}={secret}"})

    assert page.status_code == 200
    assert 'data-cluster="prod"' in page.text
    assert "Cluster Access is turned off on this server" in page.text


def test_password_sign_in_off_hides_the_form_and_refuses_a_post(
    database_url: str, tmp_path: Path
) -> None:
    settings: Settings = make_settings(database_url, tmp_path / "data", password_login=False)
    with (
        ServerThread(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        page = client.get(SIGN_IN)
        assert page.status_code == 200
        assert 'name="password"' not in page.text
        assert "neither single sign-on nor password sign-in" in page.text

        refused = post_sign_in(client)
        assert refused.status_code == 403
        assert "Password sign-in is turned off on this server" in refused.text
        assert "set-cookie" not in refused.headers


def test_a_signed_in_visit_to_sign_in_goes_on_to_next(api: Api) -> None:
    cookie = {"Cookie": f"{COOKIE}={session_of(post_sign_in(api.client))}"}

    answer = api.client.get(SIGN_IN, params={"next": "/portal/clusters"}, headers=cookie)

    assert answer.status_code == 303 and answer.headers["location"] == "/portal/clusters"


def test_a_deactivated_member_is_told_so_and_gets_no_session(api: Api, db: Engine) -> None:
    add_user(db, org_id_of(api), MEMBER_EMAIL, active=False)

    answer = post_sign_in(api.client, email=MEMBER_EMAIL, password=MEMBER_PASSWORD)

    assert answer.status_code == 401
    assert "Your account is deactivated in this organisation" in answer.text
    assert "set-cookie" not in answer.headers


def test_a_wrong_password_keeps_the_email_and_focuses_the_password(api: Api) -> None:
    answer = post_sign_in(api.client, password="wrong")

    assert answer.status_code == 401
    assert "The email or password is wrong." in answer.text
    assert f'value="{ADMIN_EMAIL}"' in answer.text
    assert 'autocomplete="current-password" required autofocus' in answer.text


def test_more_clusters_than_a_page_holds_are_said_so(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(portal_pages, "CLUSTER_LIMIT", 2)
    for name in ("c-one", "c-two", "c-three"):
        add_cluster(api, name)
    cookie = {"Cookie": f"{COOKIE}={session_of(post_sign_in(api.client))}"}

    text = api.client.get("/portal/clusters", headers=cookie).text

    assert "c-one" in text and "c-three" in text and "c-two" not in text  # by name
    assert "Showing the first 2 clusters by name" in text
