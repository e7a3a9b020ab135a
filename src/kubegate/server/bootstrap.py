"""First start: an organisation and its first admin, so someone can log in."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from kubegate.auth.hashing import hash_password
from kubegate.domain.access import MemberRole
from kubegate.server.audit import record
from kubegate.settings import Settings
from kubegate.storage.models import Membership, Organization, User

Announce = Callable[[str, str, bool], None]


async def bootstrap(
    sessions: async_sessionmaker[Any], settings: Settings, announce: Announce
) -> bool:
    """Create the organisation and admin when the database has none; True if it did.

    ``announce(email, password, generated)`` shows the credentials once; a generated password
    is never stored anywhere but as its hash.
    """
    async with sessions() as session, session.begin():
        if await session.scalar(select(func.count()).select_from(Organization)):
            return False
        given = settings.bootstrap_admin_password
        password = given.get_secret_value() if given else secrets.token_urlsafe(18)
        org = Organization(name=settings.bootstrap_org_name)
        admin = User(
            email=settings.bootstrap_admin_email.lower(),
            display_name="Administrator",
            password_hash=hash_password(password),
        )
        session.add_all([org, admin])
        await session.flush()
        session.add(Membership(org_id=org.id, user_id=admin.id, role=MemberRole.ADMIN.value))
        record(
            session,
            None,
            "org.bootstrap",
            target_type="user",
            target_id=admin.id,
            org_id=org.id,
            detail={"email": admin.email, "org": org.name},
        )
    announce(admin.email, password, given is None)
    return True
