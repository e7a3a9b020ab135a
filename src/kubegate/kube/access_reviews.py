"""Which namespace a SelfSubjectRulesReview or SelfSubjectAccessReview asks about.

Both are cluster-scoped creates (``POST /apis/authorization.k8s.io/v1/selfsubject…``), so a
request's path says nothing of the namespace they ask about: it is in the body
(``spec.namespace``; ``spec.resourceAttributes.namespace``), as JSON or, from kubectl, as
Kubernetes protobuf (the ``k8s\\0`` envelope around a ``runtime.Unknown``, whose ``raw`` is
the review: spec is field 2; a rules review's namespace field 1 of it; an access review's
resource attributes field 1 of it, their namespace field 1). ``kubectl auth can-i`` sends
one of them, and an access key limited to some namespaces may ask about those namespaces
only: the proxy reads these two small bodies, and only these, to decide. Pure: bytes in.
"""

from __future__ import annotations

import json
from dataclasses import replace

from kubegate.kube.requestinfo import RequestInfo

GROUP = "authorization.k8s.io"
REVIEWS = frozenset({"selfsubjectrulesreviews", "selfsubjectaccessreviews"})
MAX_BODY = 64 * 1024
"""The largest review body read (kubectl sends a few hundred bytes)."""
PROTOBUF_MAGIC = b"k8s\x00"


def is_self_review(info: RequestInfo) -> bool:
    """True for the create of a SelfSubjectRulesReview or SelfSubjectAccessReview."""
    return (
        info.is_resource_request
        and info.verb == "create"
        and info.api_group == GROUP
        and info.resource in REVIEWS
        and not info.subresource
        and not info.namespace
    )


def reviewed_namespace(info: RequestInfo, body: bytes) -> str | None:
    """The namespace the review in ``body`` asks about; None when it asks about none (all
    namespaces, a cluster-scoped resource, a non-resource URL) or cannot be read."""
    if body.startswith(PROTOBUF_MAGIC):
        return _protobuf_namespace(info, body[len(PROTOBUF_MAGIC) :])
    try:
        document = json.loads(body)
    except ValueError:
        return None
    spec = document.get("spec") if isinstance(document, dict) else None
    if not isinstance(spec, dict):
        return None
    if info.resource == "selfsubjectrulesreviews":
        namespace = spec.get("namespace")
    else:
        attributes = spec.get("resourceAttributes")
        namespace = attributes.get("namespace") if isinstance(attributes, dict) else None
    return namespace if isinstance(namespace, str) and namespace else None


def as_namespaced(info: RequestInfo, namespace: str) -> RequestInfo:
    """The review as if it were a request in ``namespace``: what an access key's scope is
    checked against."""
    return replace(info, namespace=namespace)


def _protobuf_namespace(info: RequestInfo, envelope: bytes) -> str | None:
    try:
        raw = _field(envelope, 2)  # runtime.Unknown.raw
        spec = _field(raw, 2) if raw is not None else None
        if spec is None:
            return None
        if info.resource == "selfsubjectaccessreviews":
            spec = _field(spec, 1)  # resourceAttributes
            if spec is None:
                return None
        namespace = _field(spec, 1)
        return namespace.decode("utf-8") if namespace else None
    except (ValueError, IndexError, UnicodeDecodeError):
        return None


def _field(message: bytes, number: int) -> bytes | None:
    """The last length-delimited field ``number`` of a protobuf message, or None."""
    found = None
    at = 0
    while at < len(message):
        key, at = _varint(message, at)
        wire = key & 7
        if wire == 0:
            _, at = _varint(message, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            size, at = _varint(message, at)
            if at + size > len(message):
                raise ValueError("truncated field")
            if key >> 3 == number:
                found = message[at : at + size]
            at += size
        else:
            raise ValueError(f"wire type {wire}")
    return found


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")
