"""split_target: the proxy's request-target, cluster id and upstream path."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubegate.errors import InvalidRequest, KubegateError, NotFound
from kubegate.gateway.target import NO_SUCH_PATH, ProxyTarget, split_target

CLUSTER = "0123456789abcdef0123456789abcdef"
PREFIX = f"/clusters/{CLUSTER}".encode()


# --- split_target ---------------------------------------------------------------------------


def test_target_splits_into_cluster_path_and_query() -> None:
    target = split_target(PREFIX + b"/api/v1/namespaces/a/pods?watch=1&resourceVersion=5")
    assert target == ProxyTarget(
        cluster_id=CLUSTER, path="/api/v1/namespaces/a/pods", query="watch=1&resourceVersion=5"
    )
    assert target.target == "/api/v1/namespaces/a/pods?watch=1&resourceVersion=5"


@pytest.mark.parametrize("suffix", [b"", b"/", b"?", b"/?"])
def test_cluster_root_maps_to_upstream_root(suffix: bytes) -> None:
    target = split_target(PREFIX + suffix)
    assert (target.cluster_id, target.path, target.query) == (CLUSTER, "/", "")
    assert target.target == "/"


def test_query_only_on_cluster_root_is_kept() -> None:
    target = split_target(PREFIX + b"?timeout=32s")
    assert target.target == "/?timeout=32s"


def test_percent_encoding_in_path_is_kept_as_sent() -> None:
    target = split_target(PREFIX + b"/api/v1/namespaces/a/configmaps/a%2Db")
    assert target.path == "/api/v1/namespaces/a/configmaps/a%2Db"


def test_query_may_carry_encoded_slashes_dots_and_backslashes() -> None:
    query = "fieldSelector=metadata.name%3D..%2Fx%5C&labelSelector=a%20in%20(b)&x=..\\"
    target = split_target(PREFIX + b"/api/v1/pods?" + query.encode())
    assert target.query == query


@pytest.mark.parametrize(
    "raw",
    [
        b"/",
        b"/api/v1/pods",
        b"/clusters",
        b"/clusters/",
        b"/clusters/" + CLUSTER.upper().encode() + b"/api",
        b"/clusters/" + CLUSTER[:-1].encode() + b"/api",
        b"/clusters/" + CLUSTER.encode() + b"0/api",
        b"/clusters/" + CLUSTER[:-1].encode() + b"g/api",
        b"/clusters/my-cluster/api",
        b"/Clusters/" + CLUSTER.encode(),
        b"/clustersx/" + CLUSTER.encode(),
    ],
)
def test_paths_not_naming_a_cluster_are_not_found(raw: bytes) -> None:
    with pytest.raises(NotFound) as caught:
        split_target(raw)
    assert caught.value.message == NO_SUCH_PATH


@pytest.mark.parametrize(
    "raw",
    [
        b"http://example.com" + PREFIX + b"/api",
        b"https://kubegate:6443" + PREFIX,
        b"kubegate:6443",
        b"*",
        b"",
    ],
)
def test_non_origin_form_targets_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        split_target(raw)


@pytest.mark.parametrize(
    "raw",
    [
        PREFIX + b"/api/v1/namespaces/a/pods/\x00",
        PREFIX + b"/api/v1/pods?watch=1\r\nX: y",
        PREFIX + b"/api/v1/pods?x=\x7f",
        PREFIX + b"/api/v1/pods/\xc3\xa9",
        PREFIX + b"/api/v1/pods?name=\xff",
        PREFIX + b"/api/v1/pods/a b",
        PREFIX + b"/api/v1/pods\t",
        PREFIX + b"/api/v1/pods#fragment",
    ],
)
def test_control_space_and_non_ascii_bytes_are_refused_in_path_and_query(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        split_target(raw)


@pytest.mark.parametrize(
    "path",
    [
        b"/api/v1/namespaces/a/pods/%2f..%2fsecrets",
        b"/api/v1/namespaces/a/pods%2Fx",
        b"/api/v1/namespaces/a/pods/p%5cx",
        b"/api/v1/namespaces/a/pods/p%5Cx",
    ],
)
def test_encoded_slash_or_backslash_is_refused(path: bytes) -> None:
    with pytest.raises(InvalidRequest, match="encoded slash or backslash"):
        split_target(PREFIX + path)


@pytest.mark.parametrize(
    "path",
    [
        b"/api/v1/namespaces/a/../../secrets",
        b"/api/v1/namespaces/a/pods/..",
        b"/api/v1/./namespaces",
        b"/api/v1/namespaces/a/%2e%2e/secrets",
        b"/api/v1/namespaces/a/%2E./secrets",
        b"/api/v1/namespaces/a/.%2E/secrets",
        b"/api/v1/namespaces/%2e/pods",
        b"/..",
        b"/../" + CLUSTER.encode() + b"/api",
    ],
)
def test_dot_segments_are_refused_even_when_encoded(path: bytes) -> None:
    with pytest.raises(InvalidRequest, match=r"'\.' or '\.\.' segments"):
        split_target(PREFIX + path)


def test_dot_segment_before_the_cluster_prefix_is_refused_not_resolved() -> None:
    with pytest.raises(InvalidRequest):
        split_target(b"/x/.." + PREFIX + b"/api")


def test_dots_inside_a_segment_are_allowed() -> None:
    target = split_target(PREFIX + b"/apis/apps/v1/namespaces/a/deployments/my..app.v2")
    assert target.path.endswith("/my..app.v2")


@pytest.mark.parametrize(
    "path", [b"//api/v1/pods", b"/api//v1/pods", b"/api/v1/pods//", b"/api/v1//namespaces/a"]
)
def test_empty_segments_are_refused(path: bytes) -> None:
    with pytest.raises(InvalidRequest, match="empty segments"):
        split_target(PREFIX + path)


@pytest.mark.parametrize("path", [b"/api\\v1/pods", b"/api/v1/pods\\..\\secrets"])
def test_raw_backslash_in_path_is_refused(path: bytes) -> None:
    with pytest.raises(InvalidRequest, match="backslash"):
        split_target(PREFIX + path)


@pytest.mark.parametrize("path", [b"/api/v1/pods/%", b"/api/v1/pods/%4", b"/api/v1/pods/%zz1"])
def test_invalid_percent_escape_in_path_is_refused(path: bytes) -> None:
    with pytest.raises(InvalidRequest, match="invalid percent-escape"):
        split_target(PREFIX + path)


@pytest.mark.parametrize("path", [b"/api/v1/pods/%00", b"/api/v1/pods/a%0d%0ab", b"/api/%7f"])
def test_encoded_control_characters_in_path_are_refused(path: bytes) -> None:
    with pytest.raises(InvalidRequest, match="control"):
        split_target(PREFIX + path)


def test_path_that_is_not_utf8_once_decoded_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="UTF-8"):
        split_target(PREFIX + b"/api/v1/namespaces/a/pods/%ff")


@given(st.binary(max_size=80))
def test_split_target_raises_only_kubegate_errors(raw: bytes) -> None:
    try:
        target = split_target(raw)
    except KubegateError as error:
        assert isinstance(error, InvalidRequest | NotFound)
        return
    assert raw.startswith(b"/clusters/")
    assert target.path.startswith("/")


_TARGET_ALPHABET = st.sampled_from(
    ["/", ".", "..", "%2e", "%2E", "%2f", "%5c", "%", "%4", "a", "pods", "?", "%41", "\\", "~"]
)


@given(st.lists(_TARGET_ALPHABET, max_size=12))
def test_accepted_paths_never_hold_dot_segments_after_decoding(pieces: list[str]) -> None:
    raw = PREFIX + "".join(pieces).encode()
    try:
        target = split_target(raw)
    except KubegateError:
        return
    segments = unquote(target.path).split("/")
    assert "." not in segments
    assert ".." not in segments
    assert target.path.startswith("/")
