"""Users and their memberships in the caller's organisation."""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, Field, field_validator

from kubegate.domain.access import MemberRole
from kubegate.server.schemas.common import Strict

# One '@' with something on each side, no spaces or control characters. Deliverability is the
# SSO provider's (or the admin's) business; this only catches typos and junk. Explicit ranges,
# not \s: Python's and JavaScript's \s differ (U+0085), and clients validate with the latter.
EMAIL_PATTERN = r"^[^@\x00-\x20\x7f-\x9f]+@[^@\x00-\x20\x7f-\x9f]+$"
# Printable text: control characters (NUL above all, which PostgreSQL refuses) are rejected.
PRINTABLE_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"
_EMAIL = re.compile(EMAIL_PATTERN)
_PRINTABLE = re.compile(PRINTABLE_PATTERN)


def normalise_email(value: str) -> str:
    """Lower-case ``value`` or raise ValueError saying what an email address looks like."""
    if not _EMAIL.match(value):
        raise ValueError("not an email address: expected one '@' between a name and a domain")
    return value.lower()


class MemberCreate(Strict):
    """Add someone to the caller's organisation (creating their user if the email is new)."""

    email: str = Field(
        min_length=3,
        max_length=320,
        json_schema_extra={"pattern": EMAIL_PATTERN},
        description="Their email; case does not matter. An existing user is added as they are.",
    )
    display_name: str = Field(
        min_length=1,
        max_length=200,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
        description="Name shown in the portal. Ignored when the email belongs to an existing "
        "user, who keeps their own.",
    )
    role: MemberRole = Field(
        default=MemberRole.MEMBER, description="admin (manages access) or member (uses it)."
    )
    password: str | None = Field(
        default=None,
        min_length=12,
        max_length=1024,
        description="Password for local login (at least 12 characters); omit for users who "
        "sign in through SSO. Only for new users: an existing user keeps their own.",
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_email(value)

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: str) -> str:
        if not _PRINTABLE.match(value):
            raise ValueError("must not contain control characters (newlines, tabs, NUL)")
        return value


class MemberUpdate(Strict):
    """Change a member's role and/or activate or deactivate their account; omitted means kept."""

    role: MemberRole | None = Field(default=None, description="New role: admin or member.")
    is_active: bool | None = Field(
        default=None,
        strict=True,
        description="false deactivates the account: sign-in and every token stop working.",
    )


class MemberOut(BaseModel):
    """A user as a member of the caller's organisation."""

    id: str = Field(description="The user's id.")
    email: str
    display_name: str
    role: MemberRole = Field(description="Their role in the caller's organisation.")
    is_active: bool = Field(description="false: deactivated, cannot sign in or use tokens.")
    local_login: bool = Field(description="Whether they have a password for local login.")
    joined_at: dt.datetime = Field(description="When they became a member.")
