"""SSO sign-ins under way and provisioning, on SQLite and PostgreSQL: a sign-in ends once
(concurrent callbacks included), only in its own browser, never after 10 minutes; a person
is found, linked or created, and the admin group decides the role."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kubegate.auth.oidc_errors import MemberDeactivated, SignInExpired, WrongBrowser
from kubegate.auth.oidc_identity import OidcIdentity
from kubegate.domain.access import MemberRole
from kubegate.server.oidc_logins import finish_login, start_login
from kubegate.server.oidc_provisioning import provision
from kubegate.settings import OidcSettings, Settings
from kubegate.storage.engine import session_factory
from kubegate.storage.models import Membership, OidcLogin, Organization, User, utcnow

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.example.com"


@pytest.fixture
def sessions(migrated_engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(migrated_engine)


async def started(sessions: async_sessionmaker[AsyncSession], **kw: Any) -> Any:
    async with sessions() as db, db.begin():
        return await start_login(db, browser_secret=kw.get("browser"), next_path="/x")


async def finished(
    sessions: async_sessionmaker[AsyncSession], state: str, browser: str | None
) -> Any:
    async with sessions() as db, db.begin():
        return await finish_login(db, state=state, browser_secret=browser)


async def test_a_sign_in_finishes_once_in_its_browser(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    login = await started(sessions)

    done = await finished(sessions, login.state, login.browser_secret)

    assert (done.nonce, done.code_verifier, done.next_path) == (
        login.nonce,
        login.code_verifier,
        "/x",
    )
    with pytest.raises(SignInExpired):
        await finished(sessions, login.state, login.browser_secret)


async def test_concurrent_callbacks_finish_a_sign_in_once(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    login = await started(sessions)

    results = await asyncio.gather(
        *(finished(sessions, login.state, login.browser_secret) for _ in range(5)),
        return_exceptions=True,
    )

    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, SignInExpired) for r in results if isinstance(r, BaseException))


async def test_another_browser_cannot_finish_it_and_the_owner_still_can(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    login = await started(sessions)
    other = await started(sessions)

    for browser in (None, other.browser_secret, "made-up"):
        with pytest.raises(WrongBrowser):
            await finished(sessions, login.state, browser)
    assert (await finished(sessions, login.state, login.browser_secret)).nonce == login.nonce


async def test_an_expired_sign_in_cannot_finish(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    login = await started(sessions)
    async with sessions() as db, db.begin():
        await db.execute(update(OidcLogin).values(expires_at=utcnow() - dt.timedelta(seconds=1)))

    with pytest.raises(SignInExpired):
        await finished(sessions, login.state, login.browser_secret)


async def test_a_browser_keeps_its_secret_while_a_sign_in_is_pending_only(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    first = await started(sessions)
    second = await started(sessions, browser=first.browser_secret)  # another tab
    assert second.browser_secret == first.browser_secret

    planted = await started(sessions, browser="chosen-by-someone-else")
    assert planted.browser_secret != "chosen-by-someone-else"


async def test_starting_a_sign_in_purges_expired_ones(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await started(sessions)
    async with sessions() as db, db.begin():
        await db.execute(update(OidcLogin).values(expires_at=utcnow() - dt.timedelta(1)))

    await started(sessions)

    async with sessions() as db:
        assert await db.scalar(select(func.count()).select_from(OidcLogin)) == 1


def settings(**oidc: Any) -> Settings:
    return Settings.load(
        oidc=OidcSettings(issuer=ISSUER, client_id="kubegate", client_secret=SecretStr("s"), **oidc)
    )


def identity(email: str, subject: str, is_admin: bool | None = None) -> OidcIdentity:
    return OidcIdentity(ISSUER, subject, email, email.split("@")[0].title(), (), is_admin)


@pytest.fixture
async def org(sessions: async_sessionmaker[AsyncSession]) -> str:
    async with sessions() as db, db.begin():
        org = Organization(name="default")
        admin = User(email="root@example.com")
        db.add_all([org, admin])
        await db.flush()
        db.add(Membership(org_id=org.id, user_id=admin.id, role=MemberRole.ADMIN.value))
        return org.id


async def provisioned(
    sessions: async_sessionmaker[AsyncSession], who: OidcIdentity, **oidc: Any
) -> Any:
    async with sessions() as db, db.begin():
        return await provision(db, settings(**oidc), who)


async def test_first_sign_in_creates_a_member_and_the_next_finds_them(
    sessions: async_sessionmaker[AsyncSession], org: str
) -> None:
    first = await provisioned(sessions, identity("ann@example.com", "sub-1"))
    again = await provisioned(sessions, identity("ann@example.com", "sub-1"))

    assert (first.how, again.how) == ("created", "existing")
    assert first.user.id == again.user.id
    assert (first.membership.org_id, first.membership.role) == (org, "member")
    assert first.user.password_hash is None


async def test_a_local_user_with_the_same_email_is_linked(
    sessions: async_sessionmaker[AsyncSession], org: str
) -> None:
    linked = await provisioned(sessions, identity("root@example.com", "sub-root"))

    assert linked.how == "linked"
    assert linked.membership.role == "admin"  # no admin_group: the role is left alone
    async with sessions() as db:
        assert await db.scalar(select(func.count()).select_from(User)) == 1


async def test_the_admin_group_promotes_and_demotes_but_keeps_the_last_admin(
    sessions: async_sessionmaker[AsyncSession], org: str
) -> None:
    group = {"admin_group": "admins"}
    promoted = await provisioned(sessions, identity("ann@example.com", "a", True), **group)
    assert promoted.membership.role == "admin"

    demoted = await provisioned(sessions, identity("ann@example.com", "a", False), **group)
    assert (demoted.membership.role, demoted.role_change) == ("member", ("admin", "member"))

    async with sessions() as db, db.begin():  # root is no admin any more: ann is the last
        await db.execute(update(Membership).values(role="member"))
        await db.execute(
            update(Membership).where(Membership.user_id == promoted.user.id).values(role="admin")
        )
    kept = await provisioned(sessions, identity("ann@example.com", "a", False), **group)
    assert (kept.membership.role, kept.role_change) == ("admin", None)


async def test_a_deactivated_member_is_refused(
    sessions: async_sessionmaker[AsyncSession], org: str
) -> None:
    ann = await provisioned(sessions, identity("ann@example.com", "a"))
    async with sessions() as db, db.begin():
        await db.execute(
            update(Membership).where(Membership.user_id == ann.user.id).values(is_active=False)
        )

    with pytest.raises(MemberDeactivated, match="ann@example.com is deactivated"):
        await provisioned(sessions, identity("ann@example.com", "a"))
