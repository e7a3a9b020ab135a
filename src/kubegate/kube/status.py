"""kubegate's errors as Kubernetes ``metav1.Status`` responses, the shape kubectl understands.

kubectl prints a Status's message (``Error from server (Forbidden): ...``) and client-go retries
a 429 or 5xx only when ``Retry-After`` is an integer number of seconds, so a refusal carries
both the header and ``details.retryAfterSeconds``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeGuard

from kubegate.errors import KubegateError

_DETAIL_STRINGS = ("name", "group", "kind", "uid")
_CAUSE_STRINGS = ("reason", "message", "field")


@dataclass(frozen=True, slots=True)
class StatusResponse:
    """A complete HTTP error response: status, headers and a ``metav1.Status`` JSON body."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def status_object(
    code: int, reason: str, message: str, details: Mapping[str, object] | None = None
) -> dict[str, object]:
    """A failure ``metav1.Status`` as a JSON-ready dict.

    ``details`` keeps only what ``metav1.StatusDetails`` defines, with the right types
    (``name``, ``group``, ``kind``, ``uid`` strings, ``retryAfterSeconds`` an int, ``causes``
    a list of ``{reason, message, field}`` strings), so client-go's decoder never rejects it;
    other keys are dropped, and ``details`` is left out when nothing remains, as Kubernetes
    does.
    """
    status: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    kept = _status_details(details or {})
    if kept:
        status["details"] = kept
    status["code"] = code
    return status


def status_response(error: KubegateError) -> StatusResponse:
    """The response the proxy sends kubectl for ``error``.

    Headers are ``content-type: application/json``, ``content-length`` and, for a 429 or a
    5xx that says how long to wait (``retry_after`` or ``details.retryAfterSeconds``),
    ``retry-after`` in whole seconds; the body says the same in ``details.retryAfterSeconds``.
    """
    details = dict(error.details)
    wait = _retry_after(error)
    if wait is not None:
        details["retryAfterSeconds"] = wait
    body = json.dumps(
        status_object(error.status, error.reason, error.message, details),
        separators=(",", ":"),
    ).encode("ascii")
    headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
    if wait is not None and (error.status == 429 or error.status >= 500):
        headers.append(("retry-after", str(wait)))
    return StatusResponse(status=error.status, headers=tuple(headers), body=body)


def _retry_after(error: KubegateError) -> int | None:
    """Whole seconds to wait, from ``retry_after`` (RateLimited) or the details; else None."""
    for candidate in (getattr(error, "retry_after", None), error.details.get("retryAfterSeconds")):
        if _is_int(candidate) and candidate >= 0:
            return candidate
    return None


def _status_details(details: Mapping[str, object]) -> dict[str, object]:
    kept: dict[str, object] = {}
    for key in _DETAIL_STRINGS:
        value = details.get(key)
        if isinstance(value, str):
            kept[key] = value
    causes = details.get("causes")
    if isinstance(causes, list | tuple):
        clean = [_status_cause(cause) for cause in causes if isinstance(cause, Mapping)]
        if clean:
            kept["causes"] = clean
    wait = details.get("retryAfterSeconds")
    if _is_int(wait):
        kept["retryAfterSeconds"] = wait
    return kept


def _status_cause(cause: Mapping[object, object]) -> dict[str, str]:
    return {key: value for key in _CAUSE_STRINGS if isinstance(value := cause.get(key), str)}


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
