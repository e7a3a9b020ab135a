"""Users and memberships: listing, adding, changing roles, deactivating; admins only."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, insert

from kubegate.auth.hashing import hash_password
from kubegate.storage.models import Membership, Organization, User
from tests.fixtures.api import ADMIN_EMAIL, Api

PASSWORD = "a long enough password"


def add_user(api: Api, email: str, role: str = "member", **extra: Any) -> dict[str, Any]:
    """Add a member with a password through the API; the new member's JSON."""
    response = api.post(
        "/api/v1/users",
        json={"email": email, "display_name": email.split("@")[0], "role": role, **extra},
    )
    assert response.status_code == 201, response.text
    member: dict[str, Any] = response.json()
    return member


def member_token(api: Api, email: str, role: str = "member") -> tuple[str, str]:
    """A new member's user id and API token."""
    member = add_user(api, email, role, password=PASSWORD)
    return member["id"], api.login(email, PASSWORD)


def other_org_user(database_url: str, email: str) -> str:
    """A user who belongs only to a second organisation, written straight to the database."""
    engine = create_engine(database_url.replace("+aiosqlite", ""))
    try:
        with engine.begin() as conn:
            org_id, user_id = "0" * 31 + "1", "0" * 31 + "2"
            conn.execute(insert(Organization).values(id=org_id, name="other"))
            conn.execute(
                insert(User).values(
                    id=user_id,
                    email=email,
                    display_name="Their Own Name",
                    password_hash=hash_password(PASSWORD),
                )
            )
            conn.execute(insert(Membership).values(org_id=org_id, user_id=user_id, role="admin"))
    finally:
        engine.dispose()
    return user_id


def listed(api: Api, token: str | None = None) -> dict[str, dict[str, Any]]:
    """The organisation's members by email."""
    response = api.get("/api/v1/users", token)
    assert response.status_code == 200, response.text
    return {m["email"]: m for m in response.json()["items"]}


def test_the_admin_lists_members_with_role_and_status(api: Api) -> None:
    add_user(api, "dev@example.com")
    members = listed(api)
    assert set(members) == {ADMIN_EMAIL, "dev@example.com"}
    assert members[ADMIN_EMAIL]["role"] == "admin"
    assert members["dev@example.com"]["role"] == "member"
    assert members["dev@example.com"]["is_active"] is True
    assert members["dev@example.com"]["local_login"] is False


def test_a_new_email_creates_a_user_who_can_log_in_with_the_password(api: Api) -> None:
    member = add_user(api, "Ops@Example.com", "admin", password=PASSWORD)
    assert member["email"] == "ops@example.com"
    assert member["role"] == "admin" and member["local_login"] is True
    assert "password" not in str(member)
    token = api.login("ops@example.com", PASSWORD)
    assert api.get("/api/v1/me", token).json()["user"]["role"] == "admin"


def test_an_existing_user_of_another_organisation_gets_a_membership(
    api: Api, database_url: str
) -> None:
    user_id = other_org_user(database_url, "shared@example.com")
    added = api.post(
        "/api/v1/users",
        json={"email": "SHARED@example.com", "display_name": "Renamed", "role": "member"},
    )
    assert added.status_code == 201, added.text
    member = added.json()
    assert member["id"] == user_id
    assert member["display_name"] == "Their Own Name"  # theirs to keep
    assert member["local_login"] is True
    assert listed(api)["shared@example.com"]["role"] == "member"


def test_adding_a_member_twice_is_a_conflict_that_says_how_to_change_them(api: Api) -> None:
    member = add_user(api, "dev@example.com")
    again = api.post(
        "/api/v1/users",
        json={"email": "DEV@example.com", "display_name": "Dev", "role": "admin"},
    )
    assert again.status_code == 409
    message = again.json()["error"]["message"]
    assert "already a member" in message and f"PATCH /api/v1/users/{member['id']}" in message
    assert listed(api)["dev@example.com"]["role"] == "member"


def test_an_existing_users_password_cannot_be_set_by_adding_them(
    api: Api, database_url: str
) -> None:
    other_org_user(database_url, "shared@example.com")
    refused = api.post(
        "/api/v1/users",
        json={
            "email": "shared@example.com",
            "display_name": "X",
            "password": "attacker's password",
        },
    )
    assert refused.status_code == 409
    assert "keeps their own password" in refused.json()["error"]["message"]
    assert "shared@example.com" not in listed(api)


def test_an_invalid_email_is_refused_naming_the_field(api: Api) -> None:
    refused = api.post("/api/v1/users", json={"email": "not an email", "display_name": "X"})
    assert refused.status_code == 422
    assert refused.json()["error"]["details"]["fields"][0]["field"] == "email"
    assert "not an email address" in refused.json()["error"]["message"]


def test_members_cannot_list_add_or_change_users(api: Api) -> None:
    user_id, token = member_token(api, "dev@example.com")
    for response in (
        api.get("/api/v1/users", token),
        api.post("/api/v1/users", token, json={"email": "x@example.com", "display_name": "X"}),
        api.patch(f"/api/v1/users/{user_id}", token, json={"role": "admin"}),
    ):
        assert response.status_code == 403
        assert "only organisation admins" in response.json()["error"]["message"]
    assert set(listed(api)) == {ADMIN_EMAIL, "dev@example.com"}
    assert listed(api)["dev@example.com"]["role"] == "member"


def test_a_promoted_member_can_act_as_an_admin(api: Api) -> None:
    user_id, token = member_token(api, "dev@example.com")
    promoted = api.patch(f"/api/v1/users/{user_id}", json={"role": "admin"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "admin"
    assert api.get("/api/v1/users", token).status_code == 200


def test_an_admin_cannot_demote_themself(api: Api) -> None:
    me = api.get("/api/v1/me").json()["user"]
    refused = api.patch(f"/api/v1/users/{me['id']}", json={"role": "member"})
    assert refused.status_code == 409
    assert "cannot demote yourself" in refused.json()["error"]["message"]
    assert listed(api)[ADMIN_EMAIL]["role"] == "admin"


def test_an_admin_cannot_deactivate_themself(api: Api) -> None:
    me = api.get("/api/v1/me").json()["user"]
    refused = api.patch(f"/api/v1/users/{me['id']}", json={"is_active": False})
    assert refused.status_code == 409
    assert "cannot deactivate yourself" in refused.json()["error"]["message"]
    assert listed(api)[ADMIN_EMAIL]["is_active"] is True


def test_another_admin_can_demote_an_admin(api: Api) -> None:
    _, other_admin = member_token(api, "second@example.com", "admin")
    first = api.get("/api/v1/me").json()["user"]
    demoted = api.patch(f"/api/v1/users/{first['id']}", other_admin, json={"role": "member"})
    assert demoted.status_code == 200, demoted.text
    assert listed(api, other_admin)[ADMIN_EMAIL]["role"] == "member"


def test_deactivating_a_member_revokes_their_tokens_for_good(api: Api) -> None:
    user_id, token = member_token(api, "dev@example.com")
    assert api.get("/api/v1/me", token).status_code == 200
    off = api.patch(f"/api/v1/users/{user_id}", json={"is_active": False})
    assert off.status_code == 200 and off.json()["is_active"] is False
    refused = api.get("/api/v1/me", token)
    assert refused.status_code == 401
    assert "deactivated" in refused.json()["error"]["message"]
    login = api.client.post(
        "/api/v1/auth/login", json={"email": "dev@example.com", "password": PASSWORD}
    )
    assert login.status_code == 401 and "deactivated" in login.json()["error"]["message"]
    on = api.patch(f"/api/v1/users/{user_id}", json={"is_active": True})
    assert on.status_code == 200
    # Reactivation lets them sign in again, but the old token stays revoked.
    assert api.get("/api/v1/me", token).status_code == 401
    assert api.get("/api/v1/me", api.login("dev@example.com", PASSWORD)).status_code == 200


def test_deactivation_in_one_organisation_leaves_their_other_membership_alone(
    api: Api, database_url: str
) -> None:
    shared = "shared@example.com"
    other_org_user(database_url, shared)  # admin of another organisation, with a password
    user_id = add_user(api, shared)["id"]  # and now a member here too
    assert api.patch(f"/api/v1/users/{user_id}", json={"is_active": False}).status_code == 200
    token = api.login(shared, PASSWORD)  # still signs in: to the other organisation
    me = api.get("/api/v1/me", token).json()
    assert me["org_name"] == "other" and me["user"]["is_active"] is True


def test_a_user_of_another_organisation_is_not_found(api: Api, database_url: str) -> None:
    user_id = other_org_user(database_url, "shared@example.com")
    missing = api.patch(f"/api/v1/users/{user_id}", json={"is_active": False})
    assert missing.status_code == 404
    assert "not a member of this organisation" in missing.json()["error"]["message"]
    assert api.login("shared@example.com", PASSWORD)  # untouched


def test_an_empty_update_changes_nothing(api: Api) -> None:
    member = add_user(api, "dev@example.com")
    for body in ({}, {"role": None, "is_active": None}):
        unchanged = api.patch(f"/api/v1/users/{member['id']}", json=body)
        assert unchanged.status_code == 200, unchanged.text
        assert unchanged.json() == member


def test_adding_and_changing_users_is_audited(api: Api) -> None:
    user_id = add_user(api, "dev@example.com")["id"]
    api.patch(f"/api/v1/users/{user_id}", json={"role": "admin", "is_active": False})
    me = api.get("/api/v1/me").json()["user"]
    api.patch(f"/api/v1/users/{me['id']}", json={"role": "member"})  # refused
    events = api.get("/api/v1/audit", params={"action": "user.update"}).json()["items"]
    refused, changed = events
    assert refused["result"] == "failure" and refused["target_id"] == me["id"]
    assert refused["detail"]["error"] == "conflict"
    assert changed["result"] == "success" and changed["target_id"] == user_id
    assert changed["detail"]["changes"] == {
        "role": {"from": "member", "to": "admin"},
        "is_active": {"from": True, "to": False},
    }
    (added,) = api.get("/api/v1/audit", params={"action": "user.add"}).json()["items"]
    assert added["actor_email"] == ADMIN_EMAIL
    assert added["detail"] == {"email": "dev@example.com", "role": "member", "new_user": True}


def test_the_user_list_pages_with_a_cursor(api: Api) -> None:
    for i in range(4):
        add_user(api, f"u{i}@example.com")
    first = api.get("/api/v1/users", params={"limit": 3}).json()
    second = api.get("/api/v1/users", params={"limit": 3, "cursor": first["next_cursor"]}).json()
    emails = [m["email"] for m in first["items"] + second["items"]]
    assert emails == [ADMIN_EMAIL] + [f"u{i}@example.com" for i in range(4)]
    assert second["next_cursor"] is None
