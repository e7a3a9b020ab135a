from __future__ import annotations

import pytest

from kubegate.domain.scope import AccessScope, ScopeRule
from kubegate.errors import ValidationFailed
from kubegate.kube.requestinfo import RequestInfo, parse_request_info

CLUSTER_A = "a" * 32
CLUSTER_B = "b" * 32


def info(method: str, target: str, *, upgrade: bool = False) -> RequestInfo:
    path, _, query = target.partition("?")
    return parse_request_info(method, path, query, upgrade=upgrade)


def rule(namespaces: set[str], resources: set[str], verbs: set[str]) -> ScopeRule:
    return ScopeRule(frozenset(namespaces), frozenset(resources), frozenset(verbs))


def scope(*rules: ScopeRule) -> AccessScope:
    return AccessScope(clusters=None, rules=rules)


READ_ONLY_PODS = scope(rule({"*"}, {"pods", "pods/*"}, {"get", "list", "watch"}))
TEAM_A = scope(rule({"team-a"}, {"*"}, {"*"}))


# --- allows ---------------------------------------------------------------------------------


def test_unrestricted_scope_allows_everything() -> None:
    unrestricted = AccessScope(clusters=None, rules=None)
    assert unrestricted.allows(info("DELETE", "/api/v1/namespaces/a/pods"))
    assert unrestricted.allows(info("GET", "/metrics"))


@pytest.mark.parametrize("target", ["/api", "/apis", "/api/v1", "/apis/apps/v1", "/version"])
def test_discovery_is_allowed_even_without_rules(target: str) -> None:
    assert scope().allows(info("GET", target))


def test_read_only_key_can_read_pods_and_logs() -> None:
    assert READ_ONLY_PODS.allows(info("GET", "/api/v1/namespaces/a/pods/p"))
    assert READ_ONLY_PODS.allows(info("GET", "/api/v1/namespaces/a/pods/p/log"))
    assert READ_ONLY_PODS.allows(info("GET", "/api/v1/pods?watch=1"))


@pytest.mark.parametrize("subresource", ["exec", "attach", "portforward"])
def test_read_only_key_cannot_stream_into_pods_via_websocket_get(subresource: str) -> None:
    request = info("GET", f"/api/v1/namespaces/a/pods/p/{subresource}", upgrade=True)
    assert not READ_ONLY_PODS.allows(request)


def test_read_only_key_cannot_exec_via_spdy_post() -> None:
    assert not READ_ONLY_PODS.allows(info("POST", "/api/v1/namespaces/a/pods/p/exec"))


def test_read_only_key_cannot_write() -> None:
    assert not READ_ONLY_PODS.allows(info("DELETE", "/api/v1/namespaces/a/pods/p"))


def test_resource_rule_does_not_cover_its_subresources() -> None:
    pods_only = scope(rule({"*"}, {"pods"}, {"*"}))
    assert pods_only.allows(info("POST", "/api/v1/namespaces/a/pods"))
    assert not pods_only.allows(info("POST", "/api/v1/namespaces/a/pods/p/exec"))


def test_subresource_wildcard_does_not_cover_the_resource_itself() -> None:
    subresources = scope(rule({"*"}, {"pods/*"}, {"*"}))
    assert subresources.allows(info("POST", "/api/v1/namespaces/a/pods/p/exec"))
    assert not subresources.allows(info("GET", "/api/v1/namespaces/a/pods/p"))


def test_named_subresource_allows_only_that_subresource() -> None:
    logs = scope(rule({"*"}, {"pods/log"}, {"get"}))
    assert logs.allows(info("GET", "/api/v1/namespaces/a/pods/p/log"))
    assert not logs.allows(info("GET", "/api/v1/namespaces/a/pods/p/exec"))
    assert not logs.allows(info("GET", "/api/v1/namespaces/a/pods/p"))


def test_group_qualified_resource_matches_only_that_group() -> None:
    apps = scope(rule({"*"}, {"deployments.apps", "deployments.apps/scale"}, {"*"}))
    assert apps.allows(info("GET", "/apis/apps/v1/namespaces/a/deployments/d"))
    assert apps.allows(info("PUT", "/apis/apps/v1/namespaces/a/deployments/d/scale"))
    assert not apps.allows(info("GET", "/apis/extensions/v1beta1/namespaces/a/deployments/d"))


def test_plain_resource_name_matches_any_group() -> None:
    deployments = scope(rule({"*"}, {"deployments"}, {"get"}))
    assert deployments.allows(info("GET", "/apis/apps/v1/namespaces/a/deployments/d"))


def test_verb_must_match() -> None:
    getter = scope(rule({"*"}, {"pods"}, {"get"}))
    assert getter.allows(info("GET", "/api/v1/namespaces/a/pods/p"))
    assert not getter.allows(info("GET", "/api/v1/namespaces/a/pods"))
    assert not getter.allows(info("PATCH", "/api/v1/namespaces/a/pods/p"))


def test_list_implies_watch() -> None:
    lister = scope(rule({"*"}, {"pods"}, {"list"}))
    assert lister.allows(info("GET", "/api/v1/namespaces/a/pods?watch=1"))
    assert lister.allows(info("GET", "/api/v1/watch/namespaces/a/pods"))


def test_watch_does_not_imply_list() -> None:
    watcher = scope(rule({"*"}, {"pods"}, {"watch"}))
    assert not watcher.allows(info("GET", "/api/v1/namespaces/a/pods"))


def test_namespace_scoped_key_works_in_its_namespace_only() -> None:
    assert TEAM_A.allows(info("DELETE", "/api/v1/namespaces/team-a/pods/p"))
    assert not TEAM_A.allows(info("GET", "/api/v1/namespaces/team-b/pods/p"))


def test_namespace_scoped_key_cannot_list_cluster_wide() -> None:
    assert not TEAM_A.allows(info("GET", "/api/v1/pods"))


def test_namespace_scoped_key_cannot_touch_cluster_scoped_resources() -> None:
    assert not TEAM_A.allows(info("GET", "/api/v1/nodes/n1"))


def test_namespace_scoped_key_cannot_reach_non_resource_paths() -> None:
    assert not TEAM_A.allows(info("GET", "/metrics"))


def test_full_wildcard_rule_reaches_non_resource_paths() -> None:
    assert scope(rule({"*"}, {"*"}, {"*"})).allows(info("GET", "/healthz"))


def test_non_resource_paths_need_wildcard_verbs_and_resources() -> None:
    assert not scope(rule({"*"}, {"*"}, {"get"})).allows(info("GET", "/healthz"))
    assert not scope(rule({"*"}, {"pods"}, {"*"})).allows(info("GET", "/healthz"))


def test_any_matching_rule_allows() -> None:
    two = scope(rule({"a"}, {"pods"}, {"get"}), rule({"b"}, {"secrets"}, {"list"}))
    assert two.allows(info("GET", "/api/v1/namespaces/b/secrets"))
    assert not two.allows(info("GET", "/api/v1/namespaces/a/secrets"))


def test_legacy_proxy_verb_needs_proxy() -> None:
    target = "/api/v1/proxy/namespaces/a/services/s"
    assert not scope(rule({"*"}, {"services"}, {"get"})).allows(info("GET", target))
    assert scope(rule({"*"}, {"services"}, {"proxy"})).allows(info("GET", target))


def test_allows_cluster_checks_the_cluster_list() -> None:
    only_a = AccessScope(clusters=frozenset({CLUSTER_A}), rules=None)
    assert only_a.allows_cluster(CLUSTER_A)
    assert not only_a.allows_cluster(CLUSTER_B)
    assert AccessScope(clusters=None, rules=None).allows_cluster(CLUSTER_B)


# --- JSON -----------------------------------------------------------------------------------


def test_none_json_is_no_scope() -> None:
    assert AccessScope.from_json(None) is None


def test_json_round_trips() -> None:
    data: dict[str, object] = {
        "clusters": [CLUSTER_B, CLUSTER_A],
        "rules": [
            {"namespaces": ["team-a"], "resources": ["pods/*", "pods"], "verbs": ["list", "get"]},
            {"namespaces": ["*"], "resources": ["deployments.apps"], "verbs": ["*"]},
        ],
    }
    parsed = AccessScope.from_json(data)
    assert parsed == AccessScope(
        clusters=frozenset({CLUSTER_A, CLUSTER_B}),
        rules=(
            rule({"team-a"}, {"pods", "pods/*"}, {"get", "list"}),
            rule({"*"}, {"deployments.apps"}, {"*"}),
        ),
    )
    assert parsed.to_json() == {
        "clusters": [CLUSTER_A, CLUSTER_B],
        "rules": [
            {"namespaces": ["team-a"], "resources": ["pods", "pods/*"], "verbs": ["get", "list"]},
            {"namespaces": ["*"], "resources": ["deployments.apps"], "verbs": ["*"]},
        ],
    }
    assert AccessScope.from_json(parsed.to_json()) == parsed


def test_missing_and_null_keys_mean_no_limit() -> None:
    assert AccessScope.from_json({}) == AccessScope(clusters=None, rules=None)
    assert AccessScope.from_json({"clusters": None, "rules": None}) == AccessScope(None, None)
    assert AccessScope(None, None).to_json() == {"clusters": None, "rules": None}


def test_empty_rule_list_allows_only_discovery() -> None:
    parsed = AccessScope.from_json({"rules": []})
    assert parsed is not None
    assert parsed.allows(info("GET", "/api/v1"))
    assert not parsed.allows(info("GET", "/api/v1/pods"))


GOOD_RULE: dict[str, object] = {"namespaces": ["a"], "resources": ["pods"], "verbs": ["get"]}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"clusterz": []}, "scope"),
        ({"clusters": "all"}, "scope.clusters"),
        ({"clusters": ["ABC"]}, "scope.clusters"),
        ({"clusters": [1]}, "scope.clusters"),
        ({"rules": {}}, "scope.rules"),
        ({"rules": ["get"]}, "scope.rules[0]"),
        ({"rules": [{**GOOD_RULE, "extra": 1}]}, "scope.rules[0]"),
        ({"rules": [{"namespaces": ["a"], "verbs": ["get"]}]}, "scope.rules[0]"),
        ({"rules": [GOOD_RULE, {**GOOD_RULE, "namespaces": []}]}, "scope.rules[1].namespaces"),
        ({"rules": [{**GOOD_RULE, "namespaces": ["Team_A"]}]}, "scope.rules[0].namespaces"),
        ({"rules": [{**GOOD_RULE, "resources": []}]}, "scope.rules[0].resources"),
        ({"rules": [{**GOOD_RULE, "resources": ["Pods"]}]}, "scope.rules[0].resources"),
        ({"rules": [{**GOOD_RULE, "resources": ["pods/a/b"]}]}, "scope.rules[0].resources"),
        ({"rules": [{**GOOD_RULE, "resources": ["*/scale"]}]}, "scope.rules[0].resources"),
        ({"rules": [{**GOOD_RULE, "verbs": ["impersonate"]}]}, "scope.rules[0].verbs"),
        ({"rules": [{**GOOD_RULE, "verbs": "get"}]}, "scope.rules[0].verbs"),
    ],
)
def test_malformed_scopes_are_refused_naming_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        AccessScope.from_json(data)
    assert caught.value.details == {"field": field}
