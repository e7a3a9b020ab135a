from __future__ import annotations

import pytest

from kubegate.domain.key_scope import KeyScope, covers, token_scope
from kubegate.domain.scope import AccessScope, ScopeRule
from kubegate.errors import PermissionDenied, ValidationFailed
from kubegate.kube.requestinfo import parse_request_info

A = "a" * 32
B = "b" * 32


def scope(*entries: tuple[str, list[str] | None]) -> KeyScope:
    return KeyScope.parse(entries)


def test_json_round_trip_is_sorted_and_omits_whole_cluster_namespaces() -> None:
    parsed = scope((B, None), (A, ["test", "dev"]))
    data = parsed.to_json()
    assert data == {"clusters": [{"cluster": A, "namespaces": ["dev", "test"]}, {"cluster": B}]}
    assert KeyScope.from_json(data) == parsed
    assert KeyScope.from_json(None) is None


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "at least one cluster"),
        ([("prod", None)], "is not a cluster id"),
        ([(A, None), (A, ["dev"])], "appears twice"),
        ([(A, [])], "must not be empty"),
        ([(A, ["Dev"])], "DNS-1123"),
        ([(A, ["*"])], "DNS-1123"),
    ],
)
def test_invalid_scopes_are_refused_with_a_clear_message(
    entries: list[tuple[str, list[str] | None]], message: str
) -> None:
    with pytest.raises(ValidationFailed, match=message):
        KeyScope.parse(entries)


def test_unknown_clusters_are_those_not_in_the_organisation() -> None:
    assert scope((A, None), (B, ["dev"])).unknown_clusters({A: "prod"}) == [B]


def test_no_scope_covers_everything_and_is_covered_only_by_itself() -> None:
    assert covers(None, None)
    assert covers(None, scope((A, ["dev"])))
    assert not covers(scope((A, None)), None)


def test_a_whole_cluster_covers_its_namespaces_but_not_other_clusters() -> None:
    whole = scope((A, None))
    assert covers(whole, scope((A, ["dev", "prod"])))
    assert covers(whole, whole)
    assert not covers(whole, scope((A, None), (B, None)))
    assert not covers(whole, scope((B, ["dev"])))


def test_namespaces_cover_only_subsets() -> None:
    dev_test = scope((A, ["dev", "test"]))
    assert covers(dev_test, scope((A, ["dev"])))
    assert not covers(dev_test, scope((A, ["dev", "prod"])))
    assert not covers(dev_test, scope((A, None)))


def test_token_scope_of_a_whole_cluster_leaves_requests_to_rbac() -> None:
    assert token_scope(scope((A, None)), A) == AccessScope(clusters=frozenset({A}), rules=None)
    assert token_scope(None, A) is None


def test_token_scope_of_namespaces_is_one_rule_for_everything_in_them() -> None:
    result = token_scope(scope((A, ["dev"])), A)
    assert result == AccessScope(
        clusters=frozenset({A}),
        rules=(ScopeRule(frozenset({"dev"}), frozenset({"*"}), frozenset({"*"})),),
    )
    assert result is not None
    allowed = parse_request_info("GET", "/api/v1/namespaces/dev/pods", "", upgrade=False)
    other = parse_request_info("GET", "/api/v1/namespaces/other/pods", "", upgrade=False)
    every = parse_request_info("GET", "/api/v1/pods", "", upgrade=False)
    nodes = parse_request_info("GET", "/api/v1/nodes", "", upgrade=False)
    assert result.allows(allowed)
    assert not result.allows(other)
    assert not result.allows(every)
    assert not result.allows(nodes)
    assert not result.allows_cluster(B)


def test_token_scope_refuses_a_cluster_outside_the_scope() -> None:
    with pytest.raises(PermissionDenied, match="does not include cluster"):
        token_scope(scope((A, None)), B)


def test_describe_names_clusters_and_namespaces() -> None:
    text = scope((A, ["dev"]), (B, None)).describe({A: "prod", B: "ci"})
    assert text == "cluster prod (namespaces dev), cluster ci"
