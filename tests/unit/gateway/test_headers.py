from __future__ import annotations

import pytest

from kubegate.gateway.headers import (
    bearer_token,
    clean_request_headers,
)

BEARER = "base64url.bearer.authorization.k8s.io."


def raw(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]


def names(headers: tuple[tuple[str, str], ...]) -> list[str]:
    return [name for name, _ in headers]


# --- clean_request_headers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "authorization",
        "Authorization",
        "cookie",
        "host",
        "impersonate-user",
        "Impersonate-User",
        "impersonate-group",
        "IMPERSONATE-GROUP",
        "impersonate-uid",
        "impersonate-extra-scopes",
        "Impersonate-Extra-Acme.com%2fteam",
        "x-remote-user",
        "X-Remote-Group",
        "x-remote-extra-scopes",
        "kubegate-identity",
        "Kubegate-Cluster",
    ],
)
def test_client_identity_and_internal_headers_are_stripped(name: str) -> None:
    clean = clean_request_headers(raw((name, "evil"), ("accept", "application/json")))
    assert clean.headers == (("accept", "application/json"),)
    assert clean.stripped == (name.lower(),)


def test_repeated_impersonate_group_headers_are_all_stripped() -> None:
    clean = clean_request_headers(
        raw(
            ("impersonate-user", "admin"),
            ("impersonate-group", "system:masters"),
            ("impersonate-group", "system:authenticated"),
            ("user-agent", "kubectl/v1.37.1"),
        )
    )
    assert clean.headers == (("user-agent", "kubectl/v1.37.1"),)
    assert clean.stripped == ("impersonate-user", "impersonate-group")


@pytest.mark.parametrize(
    "name",
    [
        "connection",
        "proxy-connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ],
)
def test_hop_by_hop_headers_are_stripped(name: str) -> None:
    clean = clean_request_headers(raw((name, "x"), ("accept", "*/*")))
    assert clean.headers == (("accept", "*/*"),)
    assert name in clean.stripped


def test_headers_named_by_connection_are_stripped() -> None:
    clean = clean_request_headers(
        raw(
            ("connection", "keep-alive, X-Secret-Hop"),
            ("Connection", "other-hop"),
            ("x-secret-hop", "1"),
            ("other-hop", "2"),
            ("x-kept", "3"),
        )
    )
    assert clean.headers == (("x-kept", "3"),)
    assert set(clean.stripped) == {"connection", "x-secret-hop", "other-hop"}


def test_connection_cannot_remove_content_length() -> None:
    clean = clean_request_headers(
        raw(("connection", "content-length"), ("content-length", "5"), ("accept", "*/*"))
    )
    assert clean.headers == (("content-length", "5"), ("accept", "*/*"))


def test_content_length_is_dropped_when_transfer_encoding_frames_the_body() -> None:
    clean = clean_request_headers(raw(("transfer-encoding", "chunked"), ("content-length", "5")))
    assert clean.headers == ()
    assert set(clean.stripped) == {"transfer-encoding", "content-length"}


def test_ordinary_headers_pass_in_order_with_repeats() -> None:
    pairs = raw(
        ("Content-Length", "12"),
        ("accept", "application/json;as=Table;g=meta.k8s.io;v=v1"),
        ("accept-encoding", "gzip"),
        ("content-type", "application/apply-patch+yaml"),
        ("content-encoding", "gzip"),
        ("user-agent", "kubectl/v1.37.1"),
        ("x-stream-protocol-version", "v5.channel.k8s.io"),
        ("x-stream-protocol-version", "v4.channel.k8s.io"),
        ("audit-id", "a1"),
        ("x-kubernetes-pf-flowschema-uid", "u"),
        ("x-custom", "kept"),
    )
    clean = clean_request_headers(pairs)
    assert clean.headers == tuple((name.decode().lower(), value.decode()) for name, value in pairs)
    assert clean.stripped == ()
    assert clean.upgrade is None


def test_values_are_decoded_as_latin1() -> None:
    clean = clean_request_headers([(b"x-note", b"caf\xe9")])
    assert clean.headers == (("x-note", "caf\u00e9"),)


def test_websocket_upgrade_is_reported_and_its_headers_kept() -> None:
    clean = clean_request_headers(
        raw(
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        )
    )
    assert clean.upgrade == "websocket"
    assert clean.headers == (
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "v5.channel.k8s.io"),
    )
    assert set(clean.stripped) == {"connection", "upgrade"}


def test_spdy_upgrade_keeps_every_stream_protocol_version() -> None:
    clean = clean_request_headers(
        raw(
            ("connection", "keep-alive, UPGRADE"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v5.channel.k8s.io"),
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("x-stream-protocol-version", "channel.k8s.io"),
        )
    )
    assert clean.upgrade == "SPDY/3.1"
    assert [v for n, v in clean.headers if n == "x-stream-protocol-version"] == [
        "v5.channel.k8s.io",
        "v4.channel.k8s.io",
        "channel.k8s.io",
    ]


def test_upgrade_token_in_a_repeated_connection_header_counts() -> None:
    clean = clean_request_headers(
        raw(("connection", "keep-alive"), ("connection", "upgrade"), ("upgrade", "websocket"))
    )
    assert clean.upgrade == "websocket"


def test_upgrade_header_without_connection_upgrade_is_not_an_upgrade() -> None:
    clean = clean_request_headers(raw(("connection", "keep-alive"), ("upgrade", "websocket")))
    assert clean.upgrade is None
    assert clean.headers == ()


def test_connection_upgrade_without_upgrade_header_is_not_an_upgrade() -> None:
    assert clean_request_headers(raw(("connection", "upgrade"))).upgrade is None


def test_bearer_subprotocol_is_stripped_from_a_mixed_list() -> None:
    clean = clean_request_headers(
        raw(
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", f"{BEARER}c2VjcmV0, v5.channel.k8s.io"),
            ("sec-websocket-protocol", "v4.channel.k8s.io"),
            ("accept", "*/*"),
        )
    )
    assert clean.headers == (
        ("sec-websocket-protocol", "v5.channel.k8s.io, v4.channel.k8s.io"),
        ("accept", "*/*"),
    )
    assert "sec-websocket-protocol" in clean.stripped
    assert all("c2VjcmV0" not in value for _, value in clean.headers)


def test_subprotocol_header_holding_only_a_bearer_token_is_dropped() -> None:
    clean = clean_request_headers(raw(("Sec-WebSocket-Protocol", f"  {BEARER}c2VjcmV0  ")))
    assert clean.headers == ()
    assert clean.stripped == ("sec-websocket-protocol",)


def test_bearer_subprotocol_behind_exotic_whitespace_is_still_stripped() -> None:
    # Go's TrimSpace also trims Unicode spaces (U+2000, here as UTF-8 bytes) that Python's
    # latin-1 view does not see as whitespace.
    clean = clean_request_headers(
        [
            (
                b"sec-websocket-protocol",
                b"\xe2\x80\x80" + BEARER.encode() + b"dG9r, v5.channel.k8s.io",
            )
        ]
    )
    assert clean.headers == (("sec-websocket-protocol", "v5.channel.k8s.io"),)


def test_bearer_prefix_match_is_case_sensitive_like_kubernetes() -> None:
    entry = "Base64url.Bearer.Authorization.K8s.Io.x"
    clean = clean_request_headers(raw(("sec-websocket-protocol", entry)))
    assert clean.headers == (("sec-websocket-protocol", entry),)
    assert clean.stripped == ()


def test_subprotocol_list_without_token_is_normalised_but_not_reported() -> None:
    clean = clean_request_headers(raw(("sec-websocket-protocol", "v5.channel.k8s.io,,v4.x")))
    assert clean.headers == (("sec-websocket-protocol", "v5.channel.k8s.io, v4.x"),)
    assert clean.stripped == ()


def test_stripped_lists_each_name_once_and_never_values() -> None:
    clean = clean_request_headers(
        raw(("authorization", "Bearer s3cret"), ("authorization", "Bearer other"))
    )
    assert clean.stripped == ("authorization",)


# --- bearer_token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "token"),
    [
        (b"Bearer abc.def", "abc.def"),
        (b"bearer abc", "abc"),
        (b"BEARER abc", "abc"),
        (b"Bearer abc extra", "abc"),
    ],
)
def test_bearer_token_is_read_like_kube_apiserver(value: bytes, token: str) -> None:
    assert bearer_token([(b"accept", b"*/*"), (b"authorization", value)]) == token


@pytest.mark.parametrize(
    "value", [b"Basic dXNlcjpwYXNz", b"Bearer", b"Bearer ", b"Bearer  abc", b"Token abc", b""]
)
def test_non_bearer_or_empty_authorization_has_no_token(value: bytes) -> None:
    assert bearer_token([(b"authorization", value)]) is None


def test_missing_authorization_has_no_token() -> None:
    assert bearer_token([(b"cookie", b"session=x")]) is None


def test_only_the_first_authorization_header_counts() -> None:
    headers = [(b"authorization", b"Basic x"), (b"authorization", b"Bearer later")]
    assert bearer_token(headers) is None
    assert bearer_token(list(reversed(headers))) == "later"


def test_authorization_name_is_case_insensitive() -> None:
    assert bearer_token([(b"Authorization", b"Bearer t")]) == "t"


@pytest.mark.parametrize("name", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_a_claimed_source_address_is_dropped(name: str) -> None:
    clean = clean_request_headers(raw((name, "10.9.9.9"), ("accept", "*/*")))
    assert clean.headers == (("accept", "*/*"),)
    assert clean.stripped == (name.lower(),)
