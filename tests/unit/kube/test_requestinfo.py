from __future__ import annotations

import pytest

from kubegate.errors import InvalidRequest
from kubegate.kube.requestinfo import RequestInfo, is_long_running, parse_request_info


def info(method: str, target: str, *, upgrade: bool = False) -> RequestInfo:
    path, _, query = target.partition("?")
    return parse_request_info(method, path, query, upgrade=upgrade)


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
