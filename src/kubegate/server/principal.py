"""Who is calling: an authenticated user within their organisation, and by which credential."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kubegate.domain.access import Actor
from kubegate.domain.key_scope import KeyScope


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller within their organisation, and the credential they used:
    its id, kind (``api`` or ``session``), expiry and, for a session, its CSRF hash."""

    actor: Actor
    email: str
    token_id: str
    kind: str
    token_expires_at: dt.datetime
    csrf_hash: str | None = None
    access_key_id: str | None = None
    key_scope: KeyScope | None = None
