"""The request head the agent writes: refused when it cannot travel as HTTP/1.1."""

from __future__ import annotations

import pytest

from kubegate.agent.request_head import check_request_head, encode_chunk, encode_request_head
from kubegate.errors import InvalidRequest


def test_ordinary_request_head_is_accepted() -> None:
    check_request_head(
        "GET",
        "/api/v1/namespaces/a/pods?labelSelector=app%3Dx&watch=1",
        [("accept", "application/json;as=Table;g=meta.k8s.io;v=v1"), ("user-agent", "kubectl")],
    )


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/api/v1/pods", [("x-note", "a\r\nImpersonate-User: system:admin")]),
        ("GET", "/api/v1/pods HTTP/1.1\r\nX: y", []),
        ("GET", "/api v1", []),
        ("GET", "relative", []),
        ("G T", "/", []),
        ("GET", "/", [("bad name", "v")]),
    ],
)
def test_request_head_that_would_split_http_is_refused(
    method: str, target: str, headers: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidRequest):
        check_request_head(method, target, headers)


def test_request_header_value_latin_1_cannot_carry_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="x-note"):
        check_request_head("GET", "/api", [("accept", "*/*"), ("x-note", "snow ☃")])


def test_request_header_value_with_a_tab_is_accepted() -> None:
    check_request_head("GET", "/api", [("x-note", "a\tb"), ("x-empty", "")])


def test_request_head_is_encoded_as_given() -> None:
    head = encode_request_head("GET", "/api/v1/pods/../secrets", [("Accept", "*/*")])
    assert head == b"GET /api/v1/pods/../secrets HTTP/1.1\r\nAccept: */*\r\n\r\n"


def test_a_body_piece_is_framed_as_one_chunk() -> None:
    assert encode_chunk(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
