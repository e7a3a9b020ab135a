"""The portal's session API: signing in with a cookie and a CSRF token."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from kubegate.server.schemas.auth import UserOut


class PortalSession(BaseModel):
    """Answer to a portal sign-in; the session itself travels in the HttpOnly cookie."""

    csrf_token: str = Field(
        description="Send this in the X-CSRF-Token header on every portal write (derived from "
        "the session cookie; GET /org/session answers it again)."
    )
    expires_at: dt.datetime = Field(description="When the session (and the cookie) ends.")
    idle_expires_at: dt.datetime = Field(
        description="When the session ends unless used before; every request moves it forward."
    )
    user: UserOut
    org_id: str
