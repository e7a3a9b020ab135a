"""Who a verified ID token says signed in, and whether this server lets them: pure.

Runs after :func:`kubegate.auth.id_tokens.verify_id_token`; applies the ``[oidc]`` settings
that are policy rather than cryptography: which claim holds the email and the groups, that
the provider vouches for the email (``email_verified``), the allowed email domains, and the
group whose members are organisation admins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubegate.auth.oidc_errors import DomainNotAllowed, EmailUnverified, IdTokenRejected
from kubegate.settings import OidcSettings


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """A person as the provider asserts them. ``is_admin`` is None when no ``admin_group``
    is configured (sign-in then never changes a role)."""

    issuer: str
    subject: str
    email: str
    display_name: str
    groups: tuple[str, ...]
    is_admin: bool | None


def identity_from_claims(claims: dict[str, Any], settings: OidcSettings) -> OidcIdentity:
    """The identity in ``claims``; :class:`EmailUnverified` or :class:`DomainNotAllowed` when
    this server must refuse it, :class:`IdTokenRejected` when a claim it needs is missing."""
    email = claims.get(settings.email_claim)
    if not isinstance(email, str) or "@" not in email:
        raise IdTokenRejected(
            f"the ID token has no email in its {settings.email_claim!r} claim "
            "(is the 'email' scope in oidc.scopes?)"
        )
    email = email.strip().lower()
    if not _verified(claims.get("email_verified")):
        raise EmailUnverified(
            f"{settings.display_name} does not confirm that {email} is yours "
            "(email_verified is not true). Verify the address with your identity provider, "
            "then sign in again."
        )
    domain = email.rsplit("@", 1)[1]
    allowed = settings.allowed_email_domains
    if allowed and domain not in allowed:
        raise DomainNotAllowed(
            f"Accounts of {domain} may not sign in to this kubegate; it accepts "
            f"{', '.join('@' + d for d in allowed)}. Sign in with an account of one of "
            "those, or ask an administrator."
        )
    groups = _groups(claims.get(settings.groups_claim))
    is_admin = None if settings.admin_group is None else settings.admin_group in groups
    name = claims.get("name")
    return OidcIdentity(
        issuer=claims["iss"],
        subject=claims["sub"],
        email=email,
        display_name=name.strip()[:200] if isinstance(name, str) else "",
        groups=groups,
        is_admin=is_admin,
    )


def _verified(value: object) -> bool:
    # Some providers send the JSON string "true" (AWS Cognito did); anything else is no.
    return value is True or value == "true"


def _groups(value: object) -> tuple[str, ...]:
    """The groups claim as a tuple of strings: a list, or a single string; else none."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(group for group in value if isinstance(group, str))
    return ()
