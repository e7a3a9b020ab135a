from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubegate.errors import InvalidRequest, KubegateError, NotFound
from kubegate.proxy.request import (
    NO_SUCH_PATH,
    ProxyTarget,
    RequestInfo,
    is_long_running,
    parse_request_info,
    split_target,
)

CLUSTER = "0123456789abcdef0123456789abcdef"
PREFIX = f"/clusters/{CLUSTER}".encode()


def info(method: str, target: str, *, upgrade: bool = False) -> RequestInfo:
    path, _, query = target.partition("?")
    return parse_request_info(method, path, query, upgrade=upgrade)


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


# --- parse_request_info: the PROTOCOL-NOTES §5 table ----------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "upgrade", "expected"),
    [
        ("GET", "/api/v1/pods", False, ("list", "", "pods", "", "", "")),
        ("GET", "/api/v1/namespaces/a/pods?watch=1", False, ("watch", "", "pods", "a", "", "")),
        (
            "GET",
            "/apis/apps/v1/namespaces/a/deployments/d",
            False,
            ("get", "apps", "deployments", "a", "d", ""),
        ),
        (
            "POST",
            "/api/v1/namespaces/a/pods/p/exec",
            False,
            ("create", "", "pods", "a", "p", "exec"),
        ),
        ("GET", "/api/v1/namespaces/a/pods/p/exec", True, ("create", "", "pods", "a", "p", "exec")),
        ("GET", "/api/v1/namespaces/a/pods/p/log", False, ("get", "", "pods", "a", "p", "log")),
        (
            "POST",
            "/api/v1/namespaces/a/pods/p/portforward",
            False,
            ("create", "", "pods", "a", "p", "portforward"),
        ),
    ],
)
def test_protocol_notes_examples_parse_like_kube_apiserver(
    method: str, target: str, upgrade: bool, expected: tuple[str, ...]
) -> None:
    parsed = info(method, target, upgrade=upgrade)
    assert parsed.is_resource_request
    got = (
        parsed.verb,
        parsed.api_group,
        parsed.resource,
        parsed.namespace,
        parsed.name,
        parsed.subresource,
    )
    assert got == expected


def test_websocket_get_on_exec_without_upgrade_is_a_plain_get() -> None:
    assert info("GET", "/api/v1/namespaces/a/pods/p/exec").verb == "get"


@pytest.mark.parametrize("subresource", ["exec", "attach", "portforward"])
def test_upgrade_get_on_streaming_pod_subresources_counts_as_create(subresource: str) -> None:
    parsed = info("GET", f"/api/v1/namespaces/a/pods/p/{subresource}", upgrade=True)
    assert parsed.verb == "create"


@pytest.mark.parametrize(
    "target", ["/api/v1/namespaces/a/pods/p/log", "/api/v1/namespaces/a/services/s/proxy"]
)
def test_upgrade_get_on_other_subresources_keeps_get(target: str) -> None:
    assert info("GET", target, upgrade=True).verb == "get"


def test_api_and_version_are_reported() -> None:
    parsed = info("GET", "/apis/apps/v1/namespaces/a/deployments/d")
    assert (parsed.api_prefix, parsed.api_group, parsed.api_version) == ("apis", "apps", "v1")
    assert parsed.parts == ("deployments", "d")
    assert parsed.path == "/apis/apps/v1/namespaces/a/deployments/d"


@pytest.mark.parametrize(
    ("method", "verb"),
    [
        ("POST", "create"),
        ("GET", "get"),
        ("HEAD", "get"),
        ("PUT", "update"),
        ("PATCH", "patch"),
        ("DELETE", "delete"),
        ("OPTIONS", ""),
    ],
)
def test_http_methods_map_to_verbs_on_named_objects(method: str, verb: str) -> None:
    assert info(method, "/api/v1/namespaces/a/pods/p").verb == verb


def test_methods_are_case_sensitive_like_go() -> None:
    assert info("delete", "/api/v1/namespaces/a/pods/p").verb == ""


def test_legacy_watch_path_sets_verb_watch_and_is_consumed() -> None:
    parsed = info("GET", "/api/v1/watch/namespaces/a/pods")
    assert (parsed.verb, parsed.resource, parsed.namespace, parsed.name) == (
        "watch",
        "pods",
        "a",
        "",
    )
    assert parsed.is_watch


def test_legacy_watch_path_of_one_object_has_its_name() -> None:
    parsed = info("GET", "/api/v1/watch/namespaces/a/pods/p")
    assert (parsed.verb, parsed.name) == ("watch", "p")


def test_legacy_watch_path_without_resource_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        info("GET", "/api/v1/watch")


def test_legacy_proxy_verb_takes_no_subresource() -> None:
    parsed = info("GET", "/api/v1/proxy/namespaces/a/pods/p/some/path")
    assert (parsed.verb, parsed.resource, parsed.name, parsed.subresource) == (
        "proxy",
        "pods",
        "p",
        "",
    )
    assert parsed.parts == ("pods", "p", "some", "path")


def test_pods_proxy_subresource_takes_the_method_verb() -> None:
    parsed = info("PUT", "/api/v1/namespaces/a/pods/p/proxy/x")
    assert (parsed.verb, parsed.subresource) == ("update", "proxy")


def test_namespace_object_is_named_and_namespaced_by_itself() -> None:
    parsed = info("GET", "/api/v1/namespaces/foo")
    assert (parsed.verb, parsed.resource, parsed.namespace, parsed.name) == (
        "get",
        "namespaces",
        "foo",
        "foo",
    )
    assert parsed.subresource == ""


@pytest.mark.parametrize("subresource", ["status", "finalize"])
def test_namespace_subresources_stay_on_namespaces(subresource: str) -> None:
    parsed = info("PUT", f"/api/v1/namespaces/foo/{subresource}")
    assert (parsed.resource, parsed.name, parsed.subresource, parsed.namespace) == (
        "namespaces",
        "foo",
        subresource,
        "foo",
    )


def test_namespaces_collection_is_cluster_scoped_list() -> None:
    parsed = info("GET", "/api/v1/namespaces")
    assert (parsed.verb, parsed.resource, parsed.namespace) == ("list", "namespaces", "")


def test_delete_without_name_is_deletecollection() -> None:
    assert info("DELETE", "/api/v1/namespaces/a/pods").verb == "deletecollection"


def test_delete_with_name_stays_delete() -> None:
    assert info("DELETE", "/api/v1/namespaces/a/pods/p").verb == "delete"


@pytest.mark.parametrize(
    ("query", "verb"),
    [
        ("watch=1", "watch"),
        ("watch=true", "watch"),
        ("watch=True", "watch"),
        ("watch=yes", "watch"),
        ("watch=", "watch"),
        ("watch", "watch"),
        ("watch=false", "list"),
        ("watch=FALSE", "list"),
        ("watch=0", "list"),
        ("watch=0&watch=1", "list"),
        ("", "list"),
        ("watched=1", "list"),
        ("watch=%zz", "list"),
        ("watch;x=1", "list"),
    ],
)
def test_watch_parameter_decodes_like_go_list_options(query: str, verb: str) -> None:
    assert info("GET", f"/api/v1/pods?{query}").verb == verb


def test_field_selector_name_names_a_single_object_watch() -> None:
    parsed = info("GET", "/api/v1/namespaces/a/pods?fieldSelector=metadata.name%3Dweb-0&watch=1")
    assert (parsed.verb, parsed.name) == ("watch", "web-0")


@pytest.mark.parametrize(
    ("selector", "name"),
    [
        ("metadata.name%3D%3Dweb", "web"),
        ("status.phase%3DRunning%2Cmetadata.name%3Dweb", "web"),
        ("metadata.name!%3Dweb", ""),
        ("metadata.namespace%3Dweb", ""),
        ("metadata.name%3D..", ""),
        ("metadata.name%3Da%25b", ""),
        ("metadata.name%3Da%3Db", ""),
        ("metadata.name%3Da%5C%3Db%2Cx", ""),
        ("metadata.name%3Da%5C%2Cb", "a,b"),
        ("bogus", ""),
    ],
)
def test_field_selector_name_follows_fields_parse_selector(selector: str, name: str) -> None:
    assert info("GET", f"/api/v1/pods?fieldSelector={selector}").name == name


def test_field_selector_name_does_not_turn_a_list_into_a_get() -> None:
    parsed = info("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dweb")
    assert (parsed.verb, parsed.name) == ("list", "web")


def test_named_get_ignores_the_watch_parameter() -> None:
    assert info("GET", "/api/v1/namespaces/a/pods/p?watch=1").verb == "get"


def test_path_segments_are_percent_decoded_for_the_parse() -> None:
    parsed = info("GET", "/api/v1/namespaces/a%2Db/configmaps/c%3A1")
    assert (parsed.namespace, parsed.name) == ("a-b", "c:1")
    assert parsed.path == "/api/v1/namespaces/a-b/configmaps/c:1"


def test_parse_refuses_a_path_split_target_would_refuse() -> None:
    with pytest.raises(InvalidRequest):
        info("GET", "/api/v1/namespaces/a/%2e%2e/secrets")


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/version",
        "/healthz",
        "/api",
        "/api/v1",
        "/apis",
        "/apis/apps",
        "/apis/apps/v1",
        "/openapi/v3/apis/apps/v1",
        "/logs/x/y",
    ],
)
def test_short_or_unprefixed_paths_are_non_resource_requests(target: str) -> None:
    parsed = info("GET", target)
    assert not parsed.is_resource_request
    assert parsed.verb == "get"
    assert (parsed.resource, parsed.namespace, parsed.parts) == ("", "", ())


def test_apis_needs_four_parts_to_be_a_resource_request() -> None:
    assert not info("GET", "/apis/apps/v1").is_resource_request
    assert info("GET", "/apis/apps/v1/deployments").is_resource_request


def test_non_resource_verb_is_the_lowercase_method() -> None:
    assert info("POST", "/healthz").verb == "post"


# --- discovery and long-running -------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/api",
        "/api/",
        "/api/v1",
        "/apis",
        "/apis/apps",
        "/apis/apps/v1",
        "/openapi/v2",
        "/openapi/v3",
        "/openapi/v3/apis/apps/v1",
        "/version",
        "/version/",
    ],
)
def test_discovery_paths_are_discovery(target: str) -> None:
    assert info("GET", target).is_discovery
    assert info("HEAD", target).is_discovery


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/healthz",
        "/metrics",
        "/openapi",
        "/openapi/v4",
        "/api/v1/pods",
        "/api/v1/namespaces",
        "/apis/apps/v1/deployments",
        "/logs",
    ],
)
def test_other_paths_are_not_discovery(target: str) -> None:
    assert not info("GET", target).is_discovery


def test_writes_to_discovery_paths_are_not_discovery() -> None:
    assert not info("POST", "/apis").is_discovery


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/namespaces/a/pods?watch=1",
        "/api/v1/watch/pods",
        "/api/v1/namespaces/a/pods/p/log?follow=true",
        "/api/v1/namespaces/a/pods/p/log?follow=1&container=c",
    ],
)
def test_watches_and_followed_logs_are_long_running(target: str) -> None:
    _, _, query = target.partition("?")
    assert is_long_running(info("GET", target), query) == "watch"


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/namespaces/a/pods",
        "/api/v1/namespaces/a/pods/p/log",
        "/api/v1/namespaces/a/pods/p/log?follow=false",
        "/api/v1/namespaces/a/pods/p/log?follow=0",
        "/api/v1/namespaces/a/pods/p?follow=true",
        "/version",
    ],
)
def test_plain_reads_are_not_long_running(target: str) -> None:
    _, _, query = target.partition("?")
    assert is_long_running(info("GET", target), query) is None
