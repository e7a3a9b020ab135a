"""``kubegate login --sso``'s device authorization grant (RFC 8628) over real HTTP.

The CLI's side is played with httpx (ask for a code, poll); the person's side is a portal
session signed in with a password, using the approval page as a browser does: open the link,
read the CSRF token from the form, press Approve or Deny.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from kubegate.server.app import create_app
from kubegate.settings import Settings
from kubegate.storage.models import ApiToken, DeviceAuthorization
from tests.fixtures.access import MEMBER_EMAIL, MEMBER_PASSWORD, add_user, audit_events, org_id_of
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api, ServerThread, make_settings
from tests.fixtures.portal import Portal, sign_in

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
INTERVAL = 1


@pytest.fixture
def api_settings(database_url: str, tmp_path: Path) -> Settings:
    """Port 0 (the verification URL names the port really bound) and a 1 s poll interval."""
    return make_settings(
        database_url, tmp_path / "data", port=0, device_poll_interval_seconds=INTERVAL
    )


def start(api: Api, description: str = "kubegate CLI on build-42") -> dict[str, Any]:
    response = api.client.post("/api/v1/auth/device", data={"client_description": description})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer: dict[str, Any] = response.json()
    return answer


def poll(api: Api, device_code: str) -> httpx.Response:
    return api.client.post(
        "/api/v1/auth/device/token", data={"grant_type": GRANT, "device_code": device_code}
    )


def poll_after_interval(api: Api, device_code: str, interval: int = INTERVAL) -> httpx.Response:
    """A poll as a well-behaved client makes it: the interval after the previous one."""
    time.sleep(interval)
    return poll(api, device_code)


def error_of(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    error: str = response.json()["error"]
    return error


def open_page(portal: Portal, user_code: str) -> httpx.Response:
    return portal.get("/device", params={"user_code": user_code})


def form_csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def press(portal: Portal, user_code: str, action: str, csrf: str | None) -> httpx.Response:
    """Submit the approval form (without a CSRF field when ``csrf`` is None)."""
    form = {"user_code": user_code, "action": action}
    if csrf is not None:
        form["csrf_token"] = csrf
    return portal.client.post("/device", data=form, headers=portal.headers(None))


def approve(portal: Portal, user_code: str, action: str = "approve") -> httpx.Response:
    """Open the link, then press the button: what a person does in the browser."""
    page = open_page(portal, user_code)
    assert page.status_code == 200, page.text
    return press(portal, user_code, action, form_csrf(page))


def status_of(db: Engine, device_code: str) -> DeviceAuthorization:
    with Session(db) as session:
        row = session.scalar(
            select(DeviceAuthorization).where(
                DeviceAuthorization.device_code_hash
                == hashlib.sha256(device_code.encode()).hexdigest()
            )
        )
        assert row is not None
        return row


@pytest.fixture
def admin_portal(api: Api) -> Portal:
    return sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]


def test_an_approved_code_gives_the_cli_a_working_login_once(
    api: Api, admin_portal: Portal
) -> None:
    started = start(api)
    assert re.fullmatch(
        r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", started["user_code"]
    )
    assert started["verification_uri"] == f"{api.url}/device"
    assert started["verification_uri_complete"] == (
        f"{api.url}/device?user_code={started['user_code']}"
    )
    assert (started["expires_in"], started["interval"]) == (600, INTERVAL)
    assert error_of(poll(api, started["device_code"])) == "authorization_pending"

    page = open_page(admin_portal, started["verification_uri_complete"].split("=")[1])
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "kubegate CLI on build-42" in page.text
    assert "Only approve if you started this yourself" in page.text
    assert "<script" not in page.text
    done = press(admin_portal, started["user_code"], "approve", form_csrf(page))
    assert done.status_code == 200 and "approved" in done.text

    answer = poll_after_interval(api, started["device_code"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    login = answer.json()
    assert login["token_type"] == "Bearer" and login["access_token"] == login["token"]
    assert login["user"]["email"] == ADMIN_EMAIL
    assert login["idle_timeout_seconds"] == api.settings.api_token_idle_seconds
    me = api.get("/api/v1/me", login["token"])
    assert me.status_code == 200 and me.json()["user"]["email"] == ADMIN_EMAIL
    assert me.json()["org_id"] == login["org_id"]

    assert error_of(poll_after_interval(api, started["device_code"])) == "invalid_grant"


def test_of_polls_racing_for_an_approved_code_exactly_one_gets_the_login(
    api: Api, admin_portal: Portal
) -> None:
    started = start(api)
    approve(admin_portal, started["user_code"])
    time.sleep(INTERVAL)  # the interval, so that no poll is told to slow down
    with (
        httpx.Client(base_url=api.url, timeout=30) as one,
        httpx.Client(base_url=api.url, timeout=30) as other,
        ThreadPoolExecutor(4) as pool,
    ):
        form = {"grant_type": GRANT, "device_code": started["device_code"]}
        answers = list(
            pool.map(lambda c: c.post("/api/v1/auth/device/token", data=form), [one, other] * 2)
        )
    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400]
    assert {a.json()["error"] for a in answers if a.status_code == 400} == {"invalid_grant"}


def test_the_login_is_a_device_cli_login_with_idle_and_absolute_lifetimes_for_the_approver(
    api: Api, db: Engine
) -> None:
    add_user(db, org_id_of(api), MEMBER_EMAIL)
    member = sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]
    started = start(api)
    poll(api, started["device_code"])
    before = dt.datetime.now(dt.UTC)
    assert approve(member, started["user_code"]).status_code == 200
    login = poll_after_interval(api, started["device_code"]).json()
    assert login["user"]["email"] == MEMBER_EMAIL and login["user"]["role"] == "member"

    with Session(db) as session:
        token = session.scalar(
            select(ApiToken).where(
                ApiToken.token_hash == hashlib.sha256(login["token"].encode()).hexdigest()
            )
        )
        assert token is not None
        assert (token.kind, token.auth_method) == ("api", "device")
        assert token.idle_timeout_seconds == api.settings.api_token_idle_seconds
        ttl = dt.timedelta(seconds=api.settings.api_token_ttl_seconds)
        assert before + ttl - dt.timedelta(seconds=5) <= token.expires_at <= before + ttl * 1.01
    row = status_of(db, started["device_code"])
    assert row.status == "used" and row.user_id == token.user_id
    assert row.org_id == org_id_of(api)
    assert [e.actor_email for e in audit_events(db, "auth.device.approve")] == [MEMBER_EMAIL]
    assert [e.actor_email for e in audit_events(db, "auth.device.login")] == [MEMBER_EMAIL]


def test_polling_faster_than_the_interval_is_told_to_slow_down_by_five_seconds(
    api: Api, db: Engine
) -> None:
    started = start(api)
    assert error_of(poll(api, started["device_code"])) == "authorization_pending"
    hurried = poll(api, started["device_code"])
    assert error_of(hurried) == "slow_down"
    assert hurried.json()["interval"] == INTERVAL + 5
    assert status_of(db, started["device_code"]).interval_seconds == INTERVAL + 5
    # The new interval counts from now on: one second is now too soon.
    assert error_of(poll_after_interval(api, started["device_code"])) == "slow_down"


def test_an_expired_code_answers_expired_token_and_cannot_be_approved(
    api: Api, db: Engine, admin_portal: Portal
) -> None:
    started = start(api)
    with db.begin() as conn:  # a clock jump past the code's ten minutes
        conn.execute(
            update(DeviceAuthorization).values(
                expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            )
        )
    assert error_of(poll(api, started["device_code"])) == "expired_token"
    page = open_page(admin_portal, started["user_code"])
    assert page.status_code == 404
    assert f"No CLI login is waiting for code {started['user_code']}" in page.text
    assert "Approve" not in page.text


def test_codes_long_expired_are_cleaned_up_when_new_ones_are_asked_for(
    api: Api, db: Engine
) -> None:
    old, recent = start(api), start(api)
    now = dt.datetime.now(dt.UTC)
    with db.begin() as conn:  # clock jumps: one code expired two hours ago, one a minute ago
        for started, ago in ((old, 120), (recent, 1)):
            conn.execute(
                update(DeviceAuthorization)
                .where(DeviceAuthorization.user_code == started["user_code"].replace("-", ""))
                .values(expires_at=now - dt.timedelta(minutes=ago))
            )
    start(api)
    with Session(db) as session:
        left = set(session.scalars(select(DeviceAuthorization.user_code)))
    assert old["user_code"].replace("-", "") not in left
    assert recent["user_code"].replace("-", "") in left  # still answers expired_token
    assert error_of(poll(api, recent["device_code"])) == "expired_token"
    assert error_of(poll(api, old["device_code"])) == "invalid_grant"


def test_a_denied_code_answers_access_denied(api: Api, admin_portal: Portal) -> None:
    started = start(api)
    done = approve(admin_portal, started["user_code"], "deny")
    assert done.status_code == 200 and "denied" in done.text
    assert error_of(poll(api, started["device_code"])) == "access_denied"
    assert error_of(poll_after_interval(api, started["device_code"])) == "access_denied"


def test_approving_without_the_sessions_csrf_token_is_refused(
    api: Api, db: Engine, admin_portal: Portal
) -> None:
    started = start(api)
    missing = press(admin_portal, started["user_code"], "approve", None)
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong = press(admin_portal, started["user_code"], "approve", "kg_csrf_" + "0" * 64)
    assert wrong.status_code == 403
    # Another session's token is no good either.
    other = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]
    page = open_page(other, started["user_code"])
    assert press(admin_portal, started["user_code"], "approve", form_csrf(page)).status_code == 403
    assert status_of(db, started["device_code"]).status == "pending"
    assert error_of(poll(api, started["device_code"])) == "authorization_pending"


def test_the_page_needs_a_portal_session_not_an_api_token(api: Api, db: Engine) -> None:
    started = start(api)
    bearer = {"Authorization": f"Bearer {api.admin_token}"}
    page = api.client.get("/device", params={"user_code": started["user_code"]}, headers=bearer)
    assert page.status_code == 401
    assert "sign in to the kubegate portal" in page.text  # no SSO here: the password way
    posted = api.client.post(
        "/device", data={"user_code": started["user_code"], "action": "approve"}, headers=bearer
    )
    assert posted.status_code == 401
    assert status_of(db, started["device_code"]).status == "pending"


def test_wrong_codes_are_limited_per_person_even_across_sessions(
    api: Api, db: Engine, admin_portal: Portal
) -> None:
    started = start(api)
    for guess in ("BBBB-BBBB", "CCCC-CCCC", "DDDD-DDDD"):
        assert open_page(admin_portal, guess).status_code == 404
    for guess in ("FFFF-FFFF", "GGGG-GGGG"):
        refused = press(admin_portal, guess, "approve", admin_portal.csrf)
        assert refused.status_code == 404
    again = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]
    blocked = open_page(again, started["user_code"])
    assert blocked.status_code == 429 and "Too many wrong codes" in blocked.text
    assert press(again, started["user_code"], "approve", again.csrf).status_code == 429
    assert status_of(db, started["device_code"]).status == "pending"
    assert len(audit_events(db, "auth.device.approve")) == 5  # each guess, as a failure


def test_what_the_cli_says_about_itself_is_shown_escaped(api: Api, admin_portal: Portal) -> None:
    started = start(api, '<script>alert("x")</script> on <b>host</b>')
    page = open_page(admin_portal, started["user_code"].lower().replace("-", " "))
    assert page.status_code == 200
    assert (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; on &lt;b&gt;host&lt;/b&gt;" in page.text
    )
    assert "<script" not in page.text and "<b>host" not in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # none at all
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_the_endpoints_answer_oauth_errors_and_take_json_too(api: Api) -> None:
    started = api.client.post("/api/v1/auth/device", json={"client_description": "json"}).json()
    assert started["user_code"]
    token = "/api/v1/auth/device/token"
    wrong_grant = api.client.post(token, data={"grant_type": "password", "device_code": "x"})
    assert error_of(wrong_grant) == "unsupported_grant_type"
    assert error_of(api.client.post(token, data={"device_code": "x"})) == "invalid_request"
    assert error_of(api.client.post(token, data={"grant_type": GRANT})) == "invalid_request"
    unknown = api.client.post(token, json={"grant_type": GRANT, "device_code": "kg_device_nope"})
    assert error_of(unknown) == "invalid_grant"
    assert "error_description" in unknown.json()
    pending = api.client.post(
        token, json={"grant_type": GRANT, "device_code": started["device_code"]}
    )
    assert error_of(pending) == "authorization_pending"


def test_the_oauth_endpoints_take_only_post_and_say_so(api: Api) -> None:
    for path in ("/api/v1/auth/device", "/api/v1/auth/device/token"):
        answer = api.client.get(path)
        assert answer.status_code == 405 and answer.headers["allow"] == "POST"


def test_without_any_browser_sign_in_the_device_endpoint_refuses_clearly(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path / "data", password_login=False)
    with (
        ServerThread(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        refused = client.post("/api/v1/auth/device", data={})
    assert error_of(refused) == "access_denied"
    assert "neither [oidc] nor password_login" in refused.json()["error_description"]
