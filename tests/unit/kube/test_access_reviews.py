from __future__ import annotations

import json

import pytest

from kubegate.kube.access_reviews import as_namespaced, is_self_review, reviewed_namespace
from kubegate.kube.requestinfo import RequestInfo, parse_request_info

RULES = "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"
ACCESS = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def info(method: str, path: str) -> RequestInfo:
    return parse_request_info(method, path, "", upgrade=False)


def test_only_creates_of_the_two_self_reviews_are_read() -> None:
    assert is_self_review(info("POST", RULES))
    assert is_self_review(info("POST", ACCESS))
    assert not is_self_review(info("GET", RULES))
    assert not is_self_review(info("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews"))
    assert not is_self_review(info("POST", "/api/v1/namespaces/dev/pods"))


def test_a_rules_review_asks_about_spec_namespace() -> None:
    body = json.dumps({"kind": "SelfSubjectRulesReview", "spec": {"namespace": "dev"}})
    assert reviewed_namespace(info("POST", RULES), body.encode()) == "dev"


def test_an_access_review_asks_about_its_resource_attributes_namespace() -> None:
    body = {"spec": {"resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"}}}
    assert reviewed_namespace(info("POST", ACCESS), json.dumps(body).encode()) == "dev"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x0a\x0bprotobuf",
        b"[]",
        b'{"spec": {}}',
        b'{"spec": {"namespace": ""}}',
        b'{"spec": {"resourceAttributes": {"namespace": 3}}}',
        b'{"spec": {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}}',
    ],
)
def test_anything_else_asks_about_no_namespace(body: bytes) -> None:
    assert reviewed_namespace(info("POST", ACCESS), body) is None
    assert reviewed_namespace(info("POST", RULES), body) is None


def test_the_review_is_checked_as_a_request_in_that_namespace() -> None:
    assert as_namespaced(info("POST", RULES), "dev").namespace == "dev"


def _ld(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def protobuf(review: bytes) -> bytes:
    """A review in Kubernetes' protobuf envelope, as kubectl sends it."""
    type_meta = _ld(1, b"authorization.k8s.io/v1") + _ld(2, b"SelfSubjectRulesReview")
    return b"k8s\x00" + _ld(1, type_meta) + _ld(2, review) + _ld(4, b"")


def test_kubectls_protobuf_reviews_are_read_too() -> None:
    rules = _ld(1, b"") + _ld(2, _ld(1, b"dev"))
    assert reviewed_namespace(info("POST", RULES), protobuf(rules)) == "dev"
    attributes = _ld(1, b"dev") + _ld(2, b"get") + _ld(4, b"pods")
    access = _ld(1, b"") + _ld(2, _ld(1, attributes))
    assert reviewed_namespace(info("POST", ACCESS), protobuf(access)) == "dev"
    non_resource = _ld(1, b"") + _ld(2, _ld(2, _ld(1, b"/healthz")))
    assert reviewed_namespace(info("POST", ACCESS), protobuf(non_resource)) is None
    assert reviewed_namespace(info("POST", RULES), b"k8s\x00\x12\x7f") is None
