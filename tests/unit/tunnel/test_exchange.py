"""How one proxied request crosses the tunnel: the header conventions both ends apply."""

from __future__ import annotations

import pytest

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.exchange import (
    SWITCHED,
    UPGRADE_HEADER,
    USER_HEADER,
    decode_request,
    decode_response,
    response_has_body,
    tunnel_request_headers,
    tunnel_response_head,
    upstream_request_head,
)

# --- request: gateway -> agent -> apiserver -----------------------------------------------


def test_a_request_reaches_the_apiserver_as_the_user_it_is_for() -> None:
    sent = tunnel_request_headers(
        [("accept", "application/json")], user="ada@example.com", upgrade=None
    )
    request = decode_request("GET", "/api/v1/pods?watch=1", sent)
    head = upstream_request_head(
        request, host="10.0.0.1:6443", authorization="Bearer agent", user_prefix="kubegate:"
    )
    assert head == [
        ("Host", "10.0.0.1:6443"),
        ("Authorization", "Bearer agent"),
        ("Impersonate-User", "kubegate:ada@example.com"),
        ("Impersonate-Group", "kubegate:authenticated"),
        ("accept", "application/json"),
    ]


def test_the_agent_drops_credentials_and_identity_claims_whatever_the_gateway_sent() -> None:
    request = decode_request(
        "GET",
        "/api",
        [
            (USER_HEADER, "ada@example.com"),
            ("Authorization", "Bearer stolen"),
            ("Impersonate-User", "system:admin"),
            ("Impersonate-Group", "system:masters"),
            ("X-Remote-User", "admin"),
            ("Cookie", "s=1"),
            ("Connection", "close"),
            ("Kubegate-Other", "x"),
            ("Accept", "*/*"),
        ],
    )
    assert request.user == "ada@example.com"
    assert request.headers == (("accept", "*/*"),)


def test_an_upgrade_request_drops_its_content_length_and_asks_the_apiserver_to_upgrade() -> None:
    sent = tunnel_request_headers(
        [("content-length", "0"), ("x-stream-protocol-version", "v4.channel.k8s.io")],
        user="ada@example.com",
        upgrade="SPDY/3.1",
    )
    request = decode_request("POST", "/api/v1/namespaces/d/pods/p/exec", sent)
    assert request.upgrade == "SPDY/3.1"
    head = upstream_request_head(request, host="h", authorization=None, user_prefix="")
    assert ("Connection", "Upgrade") in head and ("Upgrade", "SPDY/3.1") in head
    assert not any(name == "content-length" for name, _ in head)


@pytest.mark.parametrize(
    ("target", "headers", "reason"),
    [
        ("/api", [("accept", "*/*")], "without the user"),
        ("api", [(USER_HEADER, "ada@example.com")], "must start with /"),
    ],
)
def test_the_agent_refuses_a_request_it_cannot_attribute_or_route(
    target: str, headers: list[tuple[str, str]], reason: str
) -> None:
    with pytest.raises(TunnelProtocolError, match=reason):
        decode_request("GET", target, headers)


# --- response: apiserver -> agent -> gateway ----------------------------------------------


def test_response_hop_by_hop_and_internal_headers_are_dropped() -> None:
    status, headers = tunnel_response_head(
        200,
        [
            ("Connection", "keep-alive, X-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Proxy-Authenticate", "Basic"),
            ("X-Hop", "1"),
            ("Kubegate-Trace", "internal"),
            ("Content-Type", "application/json"),
        ],
    )
    assert (status, headers) == (200, [("content-type", "application/json")])


def test_response_kube_headers_pass_in_order() -> None:
    pairs = [
        ("Audit-Id", "1b2c"),
        ("Retry-After", "3"),
        ("Warning", '299 - "v1 ComponentStatus is deprecated"'),
        ("Warning", '299 - "another"'),
        ("X-Kubernetes-Pf-Flowschema-Uid", "f"),
        ("X-Kubernetes-Pf-Prioritylevel-Uid", "p"),
        ("Content-Length", "10"),
    ]
    _, headers = tunnel_response_head(429, pairs)
    assert headers == [(name.lower(), value) for name, value in pairs]


def test_response_content_length_survives_a_connection_token() -> None:
    _, headers = tunnel_response_head(
        200, [("connection", "content-length"), ("content-length", "2")]
    )
    assert headers == [("content-length", "2")]


def test_a_switch_travels_as_200_and_comes_out_as_101_with_its_upgrade() -> None:
    status, headers = tunnel_response_head(
        101,
        [
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("Content-Length", "0"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    )
    assert status == SWITCHED
    response = decode_response(status, headers)
    assert (response.status, response.upgrade) == (101, "SPDY/3.1")
    assert response.headers == (("x-stream-protocol-version", "v4.channel.k8s.io"),)


@pytest.mark.parametrize(
    ("status", "headers", "reason"),
    [
        (201, [(UPGRADE_HEADER, "websocket")], "must travel as 200"),
        (101, [], "invalid status 101"),
        (600, [], "invalid status 600"),
    ],
)
def test_the_gateway_refuses_a_response_head_no_apiserver_sends(
    status: int, headers: list[tuple[str, str]], reason: str
) -> None:
    with pytest.raises(TunnelProtocolError, match=reason):
        decode_response(status, headers)


def test_no_body_rule() -> None:
    assert response_has_body("GET", 200)
    assert not response_has_body("HEAD", 200)
    assert not response_has_body("GET", 204)
    assert not response_has_body("GET", 304)
    assert not response_has_body("GET", 101)
