from __future__ import annotations

import json

import pytest

from kubegate.errors import (
    InvalidRequest,
    KubegateError,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from kubegate.kube.status import status_object, status_response


def body_of(error: KubegateError) -> dict[str, object]:
    parsed = json.loads(status_response(error).body)
    assert isinstance(parsed, dict)
    return parsed


@pytest.mark.parametrize(
    ("error", "code", "reason"),
    [
        (InvalidRequest("bad path"), 400, "BadRequest"),
        (Unauthenticated("token expired"), 401, "Unauthorized"),
        (PermissionDenied("key scope does not allow pods/exec"), 403, "Forbidden"),
        (NotFound("no such cluster"), 404, "NotFound"),
        (RateLimited("slow down", retry_after=3), 429, "TooManyRequests"),
        (Unavailable("cluster offline"), 503, "ServiceUnavailable"),
    ],
)
def test_errors_become_kube_status_objects(error: KubegateError, code: int, reason: str) -> None:
    response = status_response(error)
    body = json.loads(response.body)
    assert response.status == code
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["metadata"] == {}
    assert body["status"] == "Failure"
    assert body["message"] == error.message
    assert body["reason"] == reason
    assert body["code"] == code


def test_body_is_compact_json_with_kube_key_order() -> None:
    body = status_response(PermissionDenied("no", details={"name": "p", "kind": "pods"})).body
    assert body == (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"no",'
        b'"reason":"Forbidden","details":{"name":"p","kind":"pods"},"code":403}'
    )


def test_headers_carry_json_content_type_and_exact_length() -> None:
    response = status_response(NotFound("no such cluster"))
    assert response.headers == (
        ("content-type", "application/json"),
        ("content-length", str(len(response.body))),
    )


def test_rate_limited_has_integer_retry_after_header_and_detail() -> None:
    response = status_response(RateLimited("too many requests", retry_after=7))
    assert ("retry-after", "7") in response.headers
    assert json.loads(response.body)["details"] == {"retryAfterSeconds": 7}


def test_unavailable_with_retry_after_detail_has_the_header() -> None:
    response = status_response(Unavailable("tunnel busy", details={"retryAfterSeconds": 2}))
    assert ("retry-after", "2") in response.headers
    assert json.loads(response.body)["details"] == {"retryAfterSeconds": 2}


def test_unavailable_without_retry_after_has_no_header() -> None:
    response = status_response(Unavailable("cluster offline"))
    assert all(name != "retry-after" for name, _ in response.headers)


def test_retry_after_is_not_sent_on_client_errors() -> None:
    response = status_response(PermissionDenied("no", details={"retryAfterSeconds": 5}))
    assert all(name != "retry-after" for name, _ in response.headers)


def test_errors_without_details_omit_details_like_kubernetes() -> None:
    assert "details" not in body_of(Unauthenticated("Unauthorized"))


def test_details_keep_only_status_details_fields() -> None:
    error = PermissionDenied(
        "no",
        details={
            "name": "p",
            "group": "apps",
            "kind": "deployments",
            "uid": "u-1",
            "field": "scope",
            "cluster": object(),
            "retryAfterSeconds": "soon",
        },
    )
    assert body_of(error)["details"] == {
        "name": "p",
        "group": "apps",
        "kind": "deployments",
        "uid": "u-1",
    }


def test_details_drop_wrongly_typed_values() -> None:
    error = InvalidRequest("no", details={"name": 3, "kind": None, "retryAfterSeconds": True})
    assert "details" not in body_of(error)


def test_causes_keep_only_string_reason_message_field() -> None:
    error = InvalidRequest(
        "invalid",
        details={
            "causes": [
                {"reason": "FieldValueInvalid", "message": "bad", "field": "spec", "x": 1},
                {"reason": 5, "message": "only this"},
                "not a cause",
            ]
        },
    )
    assert body_of(error)["details"] == {
        "causes": [
            {"reason": "FieldValueInvalid", "message": "bad", "field": "spec"},
            {"message": "only this"},
        ]
    }


def test_non_ascii_message_is_escaped_into_an_ascii_body() -> None:
    response = status_response(PermissionDenied("Zugriff verweigert für café"))
    response.body.decode("ascii")
    assert json.loads(response.body)["message"] == "Zugriff verweigert für café"


def test_status_object_builds_a_failure_status() -> None:
    assert status_object(504, "Timeout", "the cluster did not answer", {"name": "c"}) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the cluster did not answer",
        "reason": "Timeout",
        "details": {"name": "c"},
        "code": 504,
    }
