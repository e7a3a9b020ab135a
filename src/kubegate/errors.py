"""kubegate's error tree: every expected failure is a :class:`KubegateError`.

Each class carries the HTTP status, a stable machine-readable ``code`` (the REST API's
``error.code``) and the Kubernetes ``Status.reason`` the proxy uses. Messages are written for a
person and never contain a secret. Only ``server/handlers.py`` and ``proxy/status.py`` render
these; foreign exceptions are translated where they enter, with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, ClassVar


class KubegateError(Exception):
    """An expected failure, with a message a person can act on."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    reason: ClassVar[str] = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class InvalidRequest(KubegateError):
    """The request is malformed or a value is out of range."""

    status = 400
    code = "invalid_request"
    reason = "BadRequest"


class ValidationFailed(InvalidRequest):
    """A field failed validation; ``details`` names the fields."""

    status = 422
    code = "validation_failed"
    reason = "Invalid"


class Unauthenticated(KubegateError):
    """No valid credential: missing, malformed, expired or revoked."""

    status = 401
    code = "unauthenticated"
    reason = "Unauthorized"


class PermissionDenied(KubegateError):
    """Authenticated, but not allowed to do this."""

    status = 403
    code = "forbidden"
    reason = "Forbidden"


class NotFound(KubegateError):
    """The thing does not exist, or the caller may not know that it does."""

    status = 404
    code = "not_found"
    reason = "NotFound"


class Conflict(KubegateError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"
    reason = "Conflict"


class PayloadTooLarge(KubegateError):
    """The request body is larger than the limit."""

    status = 413
    code = "payload_too_large"
    reason = "RequestEntityTooLarge"


class RateLimited(KubegateError):
    """Too many requests; ``retry_after`` says how many seconds to wait."""

    status = 429
    code = "rate_limited"
    reason = "TooManyRequests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, details={"retryAfterSeconds": retry_after})
        self.retry_after = retry_after


class Unavailable(KubegateError):
    """A dependency (database, cluster tunnel) is unavailable right now; retry later."""

    status = 503
    code = "unavailable"
    reason = "ServiceUnavailable"


class BadGateway(KubegateError):
    """Something between kubegate and kube-apiserver failed mid-exchange (the tunnel, the
    agent or the apiserver's connection).

    ``metav1.StatusReason`` has no ``BadGateway``: every 502 of ours says ``InternalError``,
    the documented reason nearest to it, so clients that switch on the reason see one value.
    """

    status = 502
    code = "bad_gateway"
    reason = "InternalError"


class TunnelProtocolError(BadGateway):
    """The tunnel peer broke the wire format (bad record, bad control message, wrong version).

    The connection that carried it is closed with this message as the logged reason.
    """

    code = "tunnel_protocol_error"


class IncompatibleAgent(KubegateError):
    """An agent that speaks no tunnel protocol version this server speaks (426)."""

    status = 426
    code = "incompatible_agent"
    reason = "UpgradeRequired"


MAX_REASON = 200


def failure_reason(exc: BaseException) -> str:
    """A short, secret-free description of a connection-level failure (for a message)."""
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


class map_exceptions:  # noqa: N801 - used like the function httpx's is
    """Translate foreign exceptions at a boundary, the way httpx's ``map_exceptions`` does:
    the first entry of ``mapping`` the exception is an instance of gives the class raised,
    with :func:`failure_reason` (after ``prefix``) as its message and the original chained.
    A :class:`KubegateError` passes through unchanged.

    A class rather than a ``@contextmanager`` generator: it sits on the agent's path of every
    proxied request, and entering this costs a fraction of a generator's set-up.
    """

    __slots__ = ("_mapping", "_prefix")

    def __init__(
        self, mapping: Mapping[type[BaseException], type[KubegateError]], *, prefix: str = ""
    ) -> None:
        self._mapping = mapping
        self._prefix = prefix

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None or isinstance(exc, KubegateError) or not isinstance(exc, Exception):
            return
        for foreign, ours in self._mapping.items():
            if isinstance(exc, foreign):
                raise ours(self._prefix + failure_reason(exc)) from exc
