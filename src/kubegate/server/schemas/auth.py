"""Login and identity."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from kubegate.server.schemas.common import Strict


class LoginRequest(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: str = Field(description="admin or member, in the caller's organisation.")
    is_active: bool


class LoginResponse(BaseModel):
    token: str = Field(description="Bearer API token; shown once, stored only hashed.")
    expires_at: dt.datetime = Field(description="When the login ends at the latest.")
    idle_timeout_seconds: int | None = Field(
        default=None,
        description="The login ends when unused for this long; every use moves that forward.",
    )
    user: UserOut
    org_id: str


class SignedOut(BaseModel):
    """What a sign-out everywhere ended."""

    ended: int = Field(description="CLI logins and portal sessions ended.")


class MeResponse(BaseModel):
    user: UserOut
    org_id: str
    org_name: str
    token_expires_at: dt.datetime = Field(
        description="When the API token this request was made with expires (log in again then)."
    )
    token_idle_expires_at: dt.datetime | None = Field(
        default=None,
        description="When the API token ends if it is not used again before (each use moves "
        "this forward); null when it has no idle timeout.",
    )
