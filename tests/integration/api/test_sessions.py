"""Sessions and CLI logins: idle and absolute timeouts, no fixation, CSRF, signing out
everywhere, an admin ending a member's sessions.

A credential's clock is moved by writing its timestamps in the database (the fault a clock
jump would cause), never by waiting.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from kubegate.storage.models import ApiToken
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    audit_events,
    granted_member,
    kube_token_rows,
    sha256,
    token_path,
)
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.portal import COOKIE, Portal, sign_in


def _shift(db: Engine, secret: str, **moved_back: dt.timedelta) -> None:
    """Move a credential's timestamps into the past (``last_used_at=timedelta(hours=2)``)."""
    now = dt.datetime.now(dt.UTC)
    with db.begin() as conn:
        conn.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == sha256(secret))
            .values(**{column: now - delta for column, delta in moved_back.items()})
        )


def _row(db: Engine, secret: str) -> ApiToken:
    with Session(db) as session:
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == sha256(secret)))
    assert row is not None
    return row


def _message(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]["message"]
    return message


# --- idle and absolute timeouts ------------------------------------------------------------


def test_a_session_unused_past_its_idle_timeout_ends(api: Api, db: Engine) -> None:
    _, portal = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)
    assert portal.get("/org/session").status_code == 200
    _shift(db, portal.cookie, last_used_at=dt.timedelta(hours=1, seconds=1))

    message = _message(portal.get("/org/session"), 401)

    assert message == "this portal session ended after 1 h without use; sign in again"


def test_using_a_session_moves_its_idle_deadline_forward(api: Api, db: Engine) -> None:
    _, portal = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)
    # Last used 59 minutes ago: still alive, and this use is recorded.
    _shift(db, portal.cookie, last_used_at=dt.timedelta(minutes=59))
    before = _row(db, portal.cookie).last_used_at
    answer = portal.get("/org/session")
    assert answer.status_code == 200
    idle_until = dt.datetime.fromisoformat(answer.json()["idle_expires_at"])
    assert idle_until > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=59)

    deadline = time.monotonic() + 10
    while _row(db, portal.cookie).last_used_at == before:
        assert time.monotonic() < deadline, "the use was never recorded"
        time.sleep(0.05)
    # Recorded: the idle timeout now counts from this use.
    used = _row(db, portal.cookie).last_used_at
    assert used is not None and used > dt.datetime.now(dt.UTC) - dt.timedelta(seconds=10)


def test_a_session_ends_at_its_absolute_lifetime_however_busy(api: Api, db: Engine) -> None:
    _, portal = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)
    _shift(db, portal.cookie, expires_at=dt.timedelta(seconds=1))

    message = _message(portal.get("/org/session"), 401)

    assert message.startswith("this portal session expired at ")


def test_a_cli_login_has_an_idle_timeout_too(api: Api, db: Engine) -> None:
    login = api.client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    ).json()
    assert login["idle_timeout_seconds"] == api.settings.api_token_idle_seconds
    me = api.get("/api/v1/me", login["token"]).json()
    assert me["token_idle_expires_at"] is not None
    _shift(db, login["token"], last_used_at=dt.timedelta(days=1, seconds=1))

    message = _message(api.get("/api/v1/me", login["token"]), 401)

    assert message == "this API token ended after 24 h without use; log in again"


# --- fixation and CSRF -------------------------------------------------------------------


def test_signing_in_starts_a_new_session_and_ends_the_one_the_browser_held(
    api: Api, db: Engine
) -> None:
    _, planted = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)
    response = api.client.post(
        "/org/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        headers={"Cookie": f"{COOKIE}={planted.cookie}"},
    )
    assert response.status_code == 200
    fresh = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]

    assert fresh != planted.cookie
    assert _row(db, planted.cookie).revoked_at is not None
    assert planted.get("/org/session").status_code == 401
    assert Portal(api.client, fresh, response.json()["csrf_token"]).get("/org/session").is_success


def test_the_session_answers_the_csrf_token_it_signed_in_with(api: Api) -> None:
    _, portal = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)

    session = portal.get("/org/session").json()

    assert session["csrf_token"] == portal.csrf
    assert session["user"]["email"] == ADMIN_EMAIL


def test_a_write_with_another_sessions_csrf_token_is_refused(api: Api) -> None:
    _, mine = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)
    _, other = sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)

    for csrf in (None, "", other.csrf, mine.csrf + "0"):
        message = _message(mine.write("POST", "/org/logout", csrf=csrf), 403)
        assert message.startswith("missing or wrong CSRF token")
    assert mine.get("/org/session").status_code == 200  # nothing was ended


# --- signing out everywhere ----------------------------------------------------------------


def test_sign_out_everywhere_ends_every_login_and_session_and_their_kube_tokens(
    api: Api, db: Engine, member: tuple[str, str]
) -> None:
    user_id, first_login = member
    cluster_id = granted_member(api, member)
    second_login = api.login(MEMBER_EMAIL, MEMBER_PASSWORD)
    _, portal = sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)
    assert api.post(token_path(cluster_id), first_login).status_code == 200
    assert kube_token_rows(db, user_id=user_id)

    answer = api.post("/api/v1/auth/logout-everywhere", second_login)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ended": 3}
    for token in (first_login, second_login):
        assert "signed out or revoked" in _message(api.get("/api/v1/me", token), 401)
    assert portal.get("/org/session").status_code == 401
    assert kube_token_rows(db, user_id=user_id) == []
    # The admin's own login is untouched.
    assert api.get("/api/v1/me").status_code == 200
    [event] = audit_events(db, "auth.logout_everywhere")
    assert (event.actor_email, event.detail) == (MEMBER_EMAIL, {"ended": 3})
    # Signing in again works.
    assert api.login(MEMBER_EMAIL, MEMBER_PASSWORD)


def test_the_portal_signs_out_everywhere_with_the_csrf_token(
    api: Api, member: tuple[str, str]
) -> None:
    _, cli_login = member
    _, portal = sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)
    assert portal.write("POST", "/org/logout-everywhere", csrf=None).status_code == 403
    assert api.get("/api/v1/me", cli_login).status_code == 200

    answer = portal.post("/org/logout-everywhere")

    assert answer.status_code == 200
    assert answer.headers["set-cookie"].startswith(f'{COOKIE}="";')
    assert api.get("/api/v1/me", cli_login).status_code == 401
    assert portal.get("/org/session").status_code == 401


def test_an_admin_ends_a_members_sessions_and_the_member_can_sign_in_again(
    api: Api, db: Engine, member: tuple[str, str]
) -> None:
    user_id, cli_login = member
    _, portal = sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)

    answer = api.post(f"/api/v1/users/{user_id}/sessions/revoke")

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ended": 2}
    assert api.get("/api/v1/me", cli_login).status_code == 401
    assert portal.get("/org/session").status_code == 401
    assert api.get("/api/v1/me").status_code == 200  # the admin's own
    [event] = audit_events(db, "user.sessions_revoke")
    assert event.detail == {"email": MEMBER_EMAIL, "ended": 2}
    assert api.login(MEMBER_EMAIL, MEMBER_PASSWORD)


def test_a_member_cannot_end_another_members_sessions(api: Api, member: tuple[str, str]) -> None:
    _, cli_login = member
    admin_id = api.get("/api/v1/me").json()["user"]["id"]

    message = _message(api.post(f"/api/v1/users/{admin_id}/sessions/revoke", cli_login), 403)

    assert "admin" in message
    assert api.get("/api/v1/me").status_code == 200
