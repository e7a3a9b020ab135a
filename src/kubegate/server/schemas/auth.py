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
    expires_at: dt.datetime
    user: UserOut
    org_id: str


class MeResponse(BaseModel):
    user: UserOut
    org_id: str
    org_name: str
    token_expires_at: dt.datetime = Field(
        description="When the API token this request was made with expires (log in again then)."
    )
