"""Who an SSO sign-in is in kubegate: found, linked or created, inside the caller's
transaction.

1. The provider's account (``UserIdentity``: issuer + subject) names the user when it was
   seen before. The email kubegate knows the user by (and impersonates them as in every
   cluster) does not follow later changes at the provider; the identity row records the
   email the provider last asserted.
2. Else the user with the same email — verified by the provider, or the sign-in would not
   get here — is linked to that account, never duplicated; a local password keeps working
   wherever password login is on.
3. Else a new user (no password) is created.

The person then needs a membership of the provider's organisation (``oidc.organization``,
default ``bootstrap_org_name``): created as ``member`` on first sign-in; a deactivated one is
refused. With ``oidc.admin_group`` set, the group decides the role at every sign-in: in it,
``admin``; not in it, ``member`` — an admin who left the group is demoted, unless they are
the organisation's last active admin (then they stay admin and the sign-in is logged). With
no ``admin_group``, sign-in never changes a role.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kubegate.auth.oidc_errors import MemberDeactivated, SignInMisconfigured
from kubegate.auth.oidc_identity import OidcIdentity
from kubegate.domain.access import MemberRole
from kubegate.settings import Settings
from kubegate.storage.models import Membership, Organization, User, UserIdentity, utcnow

log = logging.getLogger("kubegate.oidc")


@dataclass(frozen=True, slots=True)
class Provisioned:
    """The signed-in user and membership, and what this sign-in changed: ``how`` is
    ``existing``, ``linked`` (an account joined to a user of the same email) or
    ``created``; ``role_change`` is (before, after) when the admin group moved the role."""

    user: User
    membership: Membership
    how: str
    role_change: tuple[str, str] | None


def organization_name(settings: Settings) -> str:
    """The organisation SSO users sign in to."""
    assert settings.oidc is not None
    return settings.oidc.organization or settings.bootstrap_org_name


async def provision(db: AsyncSession, settings: Settings, identity: OidcIdentity) -> Provisioned:
    """The user and active membership for ``identity``, created or updated as the module
    docstring says; :class:`MemberDeactivated` for a deactivated member."""
    org = await _organization(db, organization_name(settings))
    user, how = await _user(db, identity)
    membership = await db.get(Membership, (org.id, user.id))
    role_change = None
    if membership is None:
        role = MemberRole.ADMIN if identity.is_admin else MemberRole.MEMBER
        membership = Membership(org_id=org.id, user_id=user.id, role=role.value, is_active=True)
        db.add(membership)
    elif not membership.is_active:
        raise MemberDeactivated(
            f"{user.email} is deactivated in the organisation {org.name}, so kubegate refuses "
            "the sign-in. Ask one of its admins to reactivate you."
        )
    else:
        role_change = await _sync_role(db, membership, identity)
    await db.flush()
    return Provisioned(user, membership, how, role_change)


async def _organization(db: AsyncSession, name: str) -> Organization:
    org = await db.scalar(
        select(Organization).where(Organization.name == name).order_by(Organization.created_at)
    )
    if org is None:
        raise SignInMisconfigured(
            f"This server has no organisation named {name!r} for single sign-on. An "
            "administrator must set oidc.organization to an existing organisation."
        )
    return org


async def _user(db: AsyncSession, identity: OidcIdentity) -> tuple[User, str]:
    account = await db.scalar(
        select(UserIdentity).where(
            UserIdentity.issuer == identity.issuer, UserIdentity.subject == identity.subject
        )
    )
    now = utcnow()
    if account is not None:
        user = await db.get(User, account.user_id)
        assert user is not None  # the foreign key cascades deletes
        account.email, account.last_login_at = identity.email, now
        return user, "existing"
    user = await db.scalar(select(User).where(User.email == identity.email))
    how = "linked"
    if user is None:
        how = "created"
        user = User(email=identity.email, display_name=identity.display_name, password_hash=None)
        db.add(user)
        await db.flush()
    db.add(
        UserIdentity(
            user_id=user.id,
            issuer=identity.issuer,
            subject=identity.subject,
            email=identity.email,
            created_at=now,
            last_login_at=now,
        )
    )
    return user, how


async def _sync_role(
    db: AsyncSession, membership: Membership, identity: OidcIdentity
) -> tuple[str, str] | None:
    if identity.is_admin is None:
        return None
    wanted = MemberRole.ADMIN.value if identity.is_admin else MemberRole.MEMBER.value
    before = membership.role
    if before == wanted:
        return None
    if wanted == MemberRole.MEMBER.value and await _last_active_admin(db, membership):
        log.warning(
            "an SSO sign-in outside oidc.admin_group kept the organisation's last active admin",
            extra={"user_id": membership.user_id, "org_id": membership.org_id},
        )
        return None
    membership.role = wanted
    return before, wanted


async def _last_active_admin(db: AsyncSession, membership: Membership) -> bool:
    others = await db.scalar(
        select(func.count())
        .select_from(Membership)
        .where(
            Membership.org_id == membership.org_id,
            Membership.user_id != membership.user_id,
            Membership.role == MemberRole.ADMIN.value,
            Membership.is_active.is_(True),
        )
    )
    return not others
