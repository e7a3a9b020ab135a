"""Who is calling: an authenticated user within their organisation, and by which credential."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from kubegate.domain.access import Actor
from kubegate.domain.key_scope import KeyScope


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller within their organisation, and the credential they used:
    its id, kind (``api`` or ``session``), absolute expiry and, when it has one, the idle
    deadline it had when this request arrived (each use moves it forward).

    A caller using an access key (kind ``access_key``) has ``access_key_id`` (also its
    ``token_id``) and the key's scope, None for an unscoped key: what the key may reach
    within its creator's permissions."""

    actor: Actor
    email: str
    token_id: str
    kind: str
    token_expires_at: dt.datetime
    idle_expires_at: dt.datetime | None = None
    access_key_id: str | None = None
    key_scope: KeyScope | None = None
