"""Who is calling: an authenticated user within their organisation, and by which credential."""

from __future__ import annotations

from dataclasses import dataclass

from kubegate.domain.access import Actor


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller within their organisation."""

    actor: Actor
    email: str
    token_id: str
    kind: str
    csrf_hash: str | None = None
