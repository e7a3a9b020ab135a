"""How the agent reads the apiserver's refusals: one place for the reconciler and the token
minter, so a grant's failure detail and a token request's error say the same thing the same
way (the apiserver's own words when it gave any)."""

from __future__ import annotations

import httpx
from lightkube.core.exceptions import ApiError

from kubegate.agent.desired import MANAGED_BY, MANAGED_BY_LABEL, ObjectKey


class NotOurs(Exception):
    """An object under a name kubegate wants exists and kubegate does not own it."""

    def __init__(self, key: ObjectKey) -> None:
        where = f' in namespace "{key.namespace}"' if key.namespace else ""
        super().__init__(
            f'{key.kind} "{key.name}"{where} already exists and is not managed by kubegate '
            f"(it lacks the label {MANAGED_BY_LABEL}={MANAGED_BY}); kubegate leaves it alone"
        )


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes error, from an ``ApiError`` or a bare HTTP error."""
    if isinstance(exc, ApiError):
        return exc.status.code
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code
    return None


def describe(exc: Exception) -> str:
    """A failure detail: the apiserver's own words when it gave any."""
    if isinstance(exc, ApiError) and exc.status.message:
        return exc.status.message
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach the Kubernetes API: {type(exc).__name__}: {exc}"
    return str(exc) or type(exc).__name__
