"""The portal's Members page over HTTP (``/portal/members``), on SQLite and PostgreSQL.

What a browser would not send by itself: forged writes (no CSRF token, another session's,
a member's session), an admin demoting themself, a bad email. The browser test
(tests/e2e/test_portal_members_audit.py) drives the same page in Chromium. The session
cookie is Secure, so it travels in an explicit ``Cookie`` header.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from kubegate.storage.models import Membership, User
from tests.fixtures.access import (
    MEMBER_EMAIL,
    MEMBER_PASSWORD,
    add_user,
    audit_events,
    me,
    org_id_of,
)
from tests.fixtures.api import ADMIN_EMAIL, ADMIN_PASSWORD, Api
from tests.fixtures.portal import COOKIE, Portal, sign_in

MEMBERS = "/portal/members"


@pytest.fixture
def admin(api: Api) -> Portal:
    return sign_in(api.client, ADMIN_EMAIL, ADMIN_PASSWORD)[1]


@pytest.fixture
def member_id(api: Api, db: Engine) -> str:
    return add_user(db, org_id_of(api), MEMBER_EMAIL)


@pytest.fixture
def member(api: Api, member_id: str) -> Portal:
    return sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)[1]


def form_post(
    portal: Portal, path: str, csrf: str | None = "own", **fields: str
) -> tuple[int, str, str]:
    """POST a page's form as the browser would: (status, body, Location)."""
    data = dict(fields)
    if csrf is not None:
        data["csrf_token"] = portal.csrf if csrf == "own" else csrf
    answer = portal.client.post(path, data=data, headers={"Cookie": f"{COOKIE}={portal.cookie}"})
    return answer.status_code, answer.text, answer.headers.get("location", "")


def membership(db: Engine, user_id: str) -> tuple[str, bool]:
    with Session(db) as session:
        row = session.scalars(select(Membership).where(Membership.user_id == user_id)).one()
        return row.role, row.is_active


def signed_in(portal: Portal) -> bool:
    """Whether the session still opens a page (else it is sent to sign-in)."""
    return portal.get("/portal/clusters").status_code == 200


def test_admin_sees_every_member_with_role_state_sign_in_and_last_seen(
    api: Api, admin: Portal, member: Portal, member_id: str
) -> None:
    answer = admin.get(MEMBERS)

    assert answer.status_code == 200
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    text = answer.text
    row = text.split(f'data-member="{MEMBER_EMAIL}"', 1)[1].split("</tr>", 1)[0]
    assert ">Member<" in row  # the name
    assert 'data-role="member"' in row and 'data-state="active"' in row
    assert '<td data-label="Signs in with">password</td>' in row
    assert 'title="20' in row and "just now</time>" in row  # signed in a moment ago
    for action in ("role", "end-sessions", "deactivate"):
        assert f'action="/portal/members/{member_id}/{action}"' in row
    assert f'name="csrf_token" value="{admin.csrf}"' in text
    assert 'aria-current="page">Members<' in text
    assert "You are the only member so far" not in text


def test_an_admin_alone_is_told_to_add_people(api: Api, admin: Portal) -> None:
    text = admin.get(MEMBERS).text
    assert "You are the only member so far" in text
    assert "Add a member" in text


def test_a_member_is_told_they_cannot_manage_members_and_why(member: Portal) -> None:
    answer = member.get(MEMBERS)

    assert answer.status_code == 403
    assert "You cannot manage members" in answer.text
    assert "Only organisation admins can list users: you are a member" in answer.text
    assert "Add member" not in answer.text


def test_admin_adds_a_member_with_a_password_who_can_then_sign_in(
    api: Api, admin: Portal, db: Engine
) -> None:
    status, _, location = form_post(
        admin,
        MEMBERS,
        email="New.Person@Example.com",
        display_name="New Person",
        role="member",
        password="a long enough password",
    )

    assert status == 303 and location == f"{MEMBERS}?done=added"
    assert "The member was added." in admin.get(location).text
    [event] = audit_events(db, "user.add")
    assert event.detail == {"email": "new.person@example.com", "role": "member", "new_user": True}
    sign_in(api.client, "new.person@example.com", "a long enough password")


@pytest.mark.parametrize(
    ("fields", "status", "says"),
    [
        ({"email": "not-an-email"}, 422, "Email: not an email address"),
        ({"email": "x@example.com", "password": "short"}, 422, "Password: String should have"),
        ({"email": "x@example.com", "role": "owner"}, 422, "Role: Input should be"),
        ({"email": ADMIN_EMAIL}, 409, "is already a member of this organisation"),
    ],
)
def test_a_bad_add_is_refused_readably_and_the_form_kept(
    api: Api, admin: Portal, db: Engine, fields: dict[str, str], status: int, says: str
) -> None:
    sent = {"display_name": "Kept Name", "role": "member"} | fields
    answer_status, text, _ = form_post(admin, MEMBERS, **sent)

    assert answer_status == status
    assert 'role="alert" id="members-error">The member was not added: ' in text
    assert says in text.replace("&#39;", "'")
    assert 'value="Kept Name"' in text
    with Session(db) as session:
        assert session.scalar(select(User).where(User.email == "x@example.com")) is None


def test_forged_member_writes_are_refused_and_change_nothing(
    api: Api, admin: Portal, member: Portal, member_id: str, db: Engine
) -> None:
    writes = [
        (f"{MEMBERS}/{member_id}/role", {"role": "admin"}),
        (f"{MEMBERS}/{member_id}/deactivate", {}),
        (f"{MEMBERS}/{member_id}/end-sessions", {}),
        (MEMBERS, {"email": "forged@example.com", "role": "admin"}),
    ]
    for path, fields in writes:
        for csrf in (None, "kg_csrf_forged", member.csrf):  # none, made up, another session's
            status, text, _ = form_post(admin, path, csrf=csrf, **fields)
            assert status == 403, (path, csrf)
            assert "security token is missing or wrong" in text
        # A member's own session and token: refused by the rules, not only the token.
        status, text, _ = form_post(member, path, **fields)
        assert status == 403, path
        assert "only organisation admins can" in text.lower()

    assert membership(db, member_id) == ("member", True)
    assert signed_in(member)
    with Session(db) as session:
        assert session.scalar(select(User).where(User.email == "forged@example.com")) is None
    refused = audit_events(db, "user.update") + audit_events(db, "user.sessions_revoke")
    assert {event.result for event in refused} == {"failure"}  # the member's tries, recorded


def test_admin_changes_a_members_role(api: Api, admin: Portal, member_id: str, db: Engine) -> None:
    status, _, location = form_post(admin, f"{MEMBERS}/{member_id}/role", role="admin")

    assert status == 303 and location == f"{MEMBERS}?done=role"
    assert membership(db, member_id) == ("admin", True)
    [event] = audit_events(db, "user.update")
    assert event.detail["changes"] == {"role": {"from": "member", "to": "admin"}}


def test_an_admin_demoting_themself_is_refused_readably(
    api: Api, admin: Portal, db: Engine
) -> None:
    admin_id = me(api)

    status, text, _ = form_post(admin, f"{MEMBERS}/{admin_id}/role", role="member")

    assert status == 409
    assert (
        'id="members-error">The role was not changed: You cannot demote yourself: another '
        "organisation admin has to do it, so the organisation is never left without an admin."
    ) in text
    assert membership(db, admin_id) == ("admin", True)
    status, text, _ = form_post(admin, f"{MEMBERS}/{admin_id}/deactivate")
    assert status == 409 and "You cannot deactivate yourself" in text


def test_deactivating_ends_the_members_sessions_until_reactivated(
    api: Api, admin: Portal, member: Portal, member_id: str, db: Engine
) -> None:
    assert signed_in(member)

    status, _, location = form_post(admin, f"{MEMBERS}/{member_id}/deactivate")

    assert status == 303 and location == f"{MEMBERS}?done=deactivated"
    assert membership(db, member_id) == ("member", False)
    answer = member.get("/portal/clusters")
    assert answer.status_code == 303 and "ended=expired" in answer.headers["location"]
    refused = api.client.post(
        "/org/login", json={"email": MEMBER_EMAIL, "password": MEMBER_PASSWORD}
    )
    assert refused.status_code == 401
    row = admin.get(MEMBERS).text.split(f'data-member="{MEMBER_EMAIL}"', 1)[1]
    assert 'data-state="deactivated"' in row.split("</tr>", 1)[0]

    status, _, location = form_post(admin, f"{MEMBERS}/{member_id}/reactivate")

    assert status == 303 and location == f"{MEMBERS}?done=reactivated"
    assert membership(db, member_id) == ("member", True)
    sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)


def test_ending_sessions_signs_the_member_out_but_not_for_good(
    api: Api, admin: Portal, member: Portal, member_id: str, db: Engine
) -> None:
    status, _, location = form_post(admin, f"{MEMBERS}/{member_id}/end-sessions")

    assert status == 303 and location == f"{MEMBERS}?done=sessions"
    assert not signed_in(member)
    assert membership(db, member_id) == ("member", True)
    [event] = audit_events(db, "user.sessions_revoke")
    assert event.detail == {"email": MEMBER_EMAIL, "ended": 1}
    sign_in(api.client, MEMBER_EMAIL, MEMBER_PASSWORD)


def test_a_write_for_someone_not_in_the_organisation_is_not_found(api: Api, admin: Portal) -> None:
    status, text, _ = form_post(admin, f"{MEMBERS}/{'0' * 32}/end-sessions")
    assert status == 404
    assert "No session was ended: User 00000000000000000000000000000000 is not a member" in text


def test_without_a_session_the_page_goes_to_sign_in(api: Api) -> None:
    answer = api.client.get(MEMBERS)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/portal/sign-in?next=%2Fportal%2Fmembers"
