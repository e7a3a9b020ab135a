"""Logging in, using and losing an API token."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import create_engine, update

from kubegate.storage.models import ApiToken
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api


def test_login_gives_a_token_that_identifies_the_admin(api: Api) -> None:
    me = api.get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["user"]["email"] == ADMIN_EMAIL
    assert me.json()["user"]["role"] == "admin"


def test_me_says_when_the_token_used_expires(api: Api, database_url: str) -> None:
    shortened = api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    sooner = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=5)
    engine = create_engine(database_url.replace("+aiosqlite", ""))
    with engine.begin() as conn:
        conn.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == hashlib.sha256(shortened.encode()).hexdigest())
            .values(expires_at=sooner)
        )
    engine.dispose()
    # Each token answers its own expiry: the fixture's (untouched) and the shortened one.
    own = api.get("/api/v1/me").json()["token_expires_at"]
    assert dt.datetime.fromisoformat(own) > sooner + dt.timedelta(hours=1)
    me = api.get("/api/v1/me", shortened).json()
    assert dt.datetime.fromisoformat(me["token_expires_at"]) == sooner


def test_me_answers_the_expiry_the_login_gave(api: Api) -> None:
    login = api.client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    ).json()
    me = api.get("/api/v1/me", login["token"]).json()
    assert dt.datetime.fromisoformat(me["token_expires_at"]) == dt.datetime.fromisoformat(
        login["expires_at"]
    )


def test_wrong_password_and_unknown_user_get_the_same_answer(api: Api) -> None:
    wrong = api.client.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": "nope"})
    unknown = api.client.post(
        "/api/v1/auth/login", json={"email": "ghost@example.com", "password": ADMIN_PASSWORD}
    )
    for response in (wrong, unknown):
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "unauthenticated",
            "message": "wrong email or password",
            "details": {},
        }


def test_missing_token_says_how_to_get_one(api: Api) -> None:
    response = api.client.get("/api/v1/me")
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]["message"]


def test_a_token_used_after_logout_is_refused(api: Api) -> None:
    token = api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert api.post("/api/v1/auth/logout", token).status_code == 204
    reused = api.get("/api/v1/me", token)
    assert reused.status_code == 401
    assert "revoked" in reused.json()["error"]["message"]
    assert api.get("/api/v1/me").status_code == 200  # other tokens still work


def test_an_expired_token_is_refused(api: Api, database_url: str) -> None:
    token = api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    sync_url = database_url.replace("+aiosqlite", "").replace("+psycopg", "+psycopg")
    engine = create_engine(sync_url)
    with engine.begin() as conn:
        conn.execute(
            update(ApiToken).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    engine.dispose()
    response = api.get("/api/v1/me", token)
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_a_made_up_token_is_refused(api: Api) -> None:
    response = api.get("/api/v1/me", "kg_api_not-a-real-token")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_health_and_readiness(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ok", "database": "up"}
