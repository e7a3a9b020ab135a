"""kubegate's entries in a kubeconfig: text in, text out, everything else left as it was."""

from __future__ import annotations

import base64
import datetime
import difflib
from typing import Any

import pytest
from ruamel.yaml import YAML

from kubegate.cli.kubeconfig_edit import (
    MARKER,
    ExecAuth,
    KubeconfigError,
    ManagedContext,
    ManagedEntry,
    TokenAuth,
    add,
    dump,
    load,
    managed,
    remove,
    standalone,
)
from tests.fixtures.kubeconfigs import FOREIGN

# Twelve contexts from other tools, in the indented-sequence style, with comments, flow
# mappings, quotes, nulls spelled three ways, extensions and unknown fields.

KUBEGATE = "https://kubegate.example.com"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def entry(
    name: str = "prod-eu",
    *,
    namespace: str | None = None,
    proxy: str = f"{KUBEGATE}/clusters/c0ffee/k8s",
    auth: ExecAuth | TokenAuth | None = None,
) -> ManagedEntry:
    return ManagedEntry(
        cluster_name=name,
        cluster_id="c0ffee",
        kubegate_server=KUBEGATE,
        proxy_server=proxy,
        ca_pem=CA_PEM,
        insecure_skip_tls_verify=False,
        namespace=namespace,
        auth=auth
        or ExecAuth(
            command="/usr/local/bin/kubegate",
            args=("cluster", "kube-token", "--server", KUBEGATE, "--cluster", "c0ffee"),
            install_hint="Install the kubegate CLI: https://kubegate.example.com/docs/cli",
        ),
    )


def plain(text: str) -> Any:
    """The document as plain data, the way a YAML reader other than ruamel's round trip sees it."""
    return YAML(typ="safe").load(text)


def named(text: str, section: str, name: str) -> Any:
    return next(item for item in plain(text)[section] if item["name"] == name)


def test_add_only_inserts_lines_into_a_kubeconfig_of_twelve_foreign_contexts() -> None:
    doc = load(FOREIGN, "config")
    add(doc, entry(), use=False)
    after = dump(doc)
    before_lines, after_lines = FOREIGN.splitlines(), after.splitlines()
    opcodes = difflib.SequenceMatcher(None, before_lines, after_lines, autojunk=False)
    assert {tag for tag, *_ in opcodes.get_opcodes()} == {"equal", "insert"}
    assert len(plain(after)["contexts"]) == 13
    assert "current-context: gke-prod" in after


def test_a_comment_before_the_next_section_stays_just_before_it() -> None:
    doc = load(FOREIGN, "config")
    add(doc, entry(), use=False)
    lines = dump(doc).splitlines()
    assert lines[lines.index("users:") - 2 : lines.index("users:")] == ["# users come next", ""]


def test_add_then_remove_gives_back_the_original_text() -> None:
    doc = load(FOREIGN, "config")
    add(doc, entry(), use=False)
    add(doc, entry("staging-us"), use=False)
    remove(doc, "prod-eu")
    remove(doc, "staging-us")
    assert dump(doc) == FOREIGN


def test_load_then_dump_without_a_change_is_the_same_text() -> None:
    assert dump(load(FOREIGN, "config")) == FOREIGN


def test_add_twice_is_the_same_as_once() -> None:
    once = load(FOREIGN, "config")
    add(once, entry(), use=True)
    twice = load(dump(once), "config")
    result = add(twice, entry(), use=True)
    assert result.replaced
    assert dump(twice) == dump(once)


def test_add_again_replaces_kubegates_entries_where_they_are() -> None:
    doc = load(FOREIGN, "config")
    add(doc, entry("prod-eu"), use=False)
    add(doc, entry("staging-us"), use=False)
    add(doc, entry("prod-eu", proxy="https://moved.example.com/k8s"), use=False)
    names = [c["name"] for c in plain(dump(doc))["clusters"]]
    assert names[-2:] == ["kubegate-prod-eu", "kubegate-staging-us"]
    cluster = named(dump(doc), "clusters", "kubegate-prod-eu")["cluster"]
    assert cluster["server"] == "https://moved.example.com/k8s"


def test_add_without_use_leaves_current_context_alone() -> None:
    doc = load(FOREIGN, "config")
    result = add(doc, entry(), use=False)
    assert result.current_context == "gke-prod"
    assert plain(dump(doc))["current-context"] == "gke-prod"


def test_add_with_use_makes_the_context_current() -> None:
    doc = load(FOREIGN, "config")
    result = add(doc, entry(), use=True)
    assert result.current_context == "kubegate-prod-eu"
    assert plain(dump(doc))["current-context"] == "kubegate-prod-eu"
    assert [m.name for m in managed(doc) if m.current] == ["kubegate-prod-eu"]


def test_removing_the_current_context_clears_current_context_and_says_so() -> None:
    doc = load(FOREIGN, "config")
    add(doc, entry(), use=True)
    result = remove(doc, "prod-eu")
    assert (result.removed, result.was_current, result.current_context) == (True, True, None)
    assert plain(dump(doc))["current-context"] == ""


def test_removing_another_context_reports_the_current_one() -> None:
    doc = load(FOREIGN, "config")
    add(doc, entry(), use=False)
    result = remove(doc, "prod-eu")
    assert (result.was_current, result.current_context) == (False, "gke-prod")


def test_removing_what_is_not_there_changes_nothing() -> None:
    doc = load(FOREIGN, "config")
    assert not remove(doc, "prod-eu").removed
    assert dump(doc) == FOREIGN


@pytest.mark.parametrize("section", ["cluster", "user", "context"])
def test_a_same_named_entry_without_the_marker_is_neither_replaced_nor_removed(
    section: str,
) -> None:
    start = FOREIGN.index(f"\n{section}s:\n")
    at = FOREIGN.index("  - name: minikube\n", start)
    text = FOREIGN[:at] + "  - name: kubegate-prod-eu\n" + FOREIGN[at + 19 :]
    doc = load(text, "config")
    with pytest.raises(KubeconfigError, match=f"a {section} named 'kubegate-prod-eu'.*not replace"):
        add(doc, entry(), use=True)
    with pytest.raises(KubeconfigError, match="will not remove"):
        remove(doc, "prod-eu")
    assert dump(doc) == text


def test_the_exec_user_is_what_kubectl_runs_the_plugin_from() -> None:
    text = standalone(entry())
    user = named(text, "users", "kubegate-prod-eu")["user"]
    assert user == {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "/usr/local/bin/kubegate",
            "args": ["cluster", "kube-token", "--server", KUBEGATE, "--cluster", "c0ffee"],
            "installHint": "Install the kubegate CLI: https://kubegate.example.com/docs/cli",
            "interactiveMode": "Never",
            "provideClusterInfo": True,
        },
        "extensions": [
            {
                "name": MARKER,
                "extension": {
                    "kubegateServer": KUBEGATE,
                    "clusterId": "c0ffee",
                    "clusterName": "prod-eu",
                    "auth": "exec",
                },
            }
        ],
    }


def test_standalone_is_a_complete_kubeconfig_with_its_context_current() -> None:
    text = standalone(entry(namespace="shop"))
    config = plain(text)
    assert (config["apiVersion"], config["kind"]) == ("v1", "Config")
    assert config["current-context"] == "kubegate-prod-eu"
    assert [len(config[key]) for key in ("clusters", "users", "contexts")] == [1, 1, 1]
    cluster = named(text, "clusters", "kubegate-prod-eu")["cluster"]
    assert cluster["server"] == f"{KUBEGATE}/clusters/c0ffee/k8s"
    assert cluster["certificate-authority-data"] == base64.b64encode(CA_PEM).decode()
    context = named(text, "contexts", "kubegate-prod-eu")["context"]
    assert (context["cluster"], context["user"]) == ("kubegate-prod-eu", "kubegate-prod-eu")
    assert context["namespace"] == "shop"
    assert context["extensions"][0]["name"] == MARKER


def test_an_embedded_token_is_a_token_user_and_its_expiry_is_listed() -> None:
    expires = datetime.datetime(2030, 5, 1, 12, 30, tzinfo=datetime.UTC)
    doc = load("", "config")
    add(doc, entry(auth=TokenAuth(token="kg_kube_abc", expires_at=expires)), use=False)
    user = named(dump(doc), "users", "kubegate-prod-eu")["user"]
    assert user["token"] == "kg_kube_abc"
    assert "exec" not in user
    [listed] = managed(load(dump(doc), "config"))
    assert (listed.auth, listed.token_expires_at) == ("token", expires)


def test_managed_lists_only_kubegates_contexts_with_what_they_point_at() -> None:
    doc = load(FOREIGN, "config")
    add(doc, entry("prod-eu", namespace="shop"), use=True)
    assert managed(load(dump(doc), "config")) == [
        ManagedContext(
            name="kubegate-prod-eu",
            cluster_name="prod-eu",
            cluster_id="c0ffee",
            kubegate_server=KUBEGATE,
            proxy_server=f"{KUBEGATE}/clusters/c0ffee/k8s",
            namespace="shop",
            auth="exec",
            token_expires_at=None,
            current=True,
        )
    ]


def test_insecure_skip_tls_verify_replaces_the_ca() -> None:
    insecure = ManagedEntry(
        "dev", "1", KUBEGATE, "https://gw/k8s", CA_PEM, True, None, entry().auth
    )
    cluster = named(standalone(insecure), "clusters", "kubegate-dev")["cluster"]
    assert cluster["insecure-skip-tls-verify"] is True
    assert "certificate-authority-data" not in cluster


def test_strings_yaml_1_1_reads_as_booleans_or_numbers_are_quoted() -> None:
    text = standalone(entry("on", namespace="no"))
    assert 'namespace: "no"' in text
    assert 'clusterName: "on"' in text
    assert 'clusterId: "0123"' in standalone(
        ManagedEntry("x", "0123", KUBEGATE, "https://gw", None, False, None, entry().auth)
    )


def test_empty_text_is_a_new_config_and_adding_to_it_gives_block_lists() -> None:
    doc = load("", "config")
    assert managed(doc) == []
    add(doc, entry(), use=False)
    text = dump(doc)
    assert text.startswith("apiVersion: v1\nkind: Config\nclusters:\n- name: kubegate-prod-eu\n")


def test_kubectls_own_layout_is_kept() -> None:
    kubectl_written = (
        "apiVersion: v1\nclusters:\n- cluster:\n    server: https://o\n  name: other\n"
        'contexts: null\ncurrent-context: ""\nkind: Config\npreferences: {}\nusers: null\n'
    )
    doc = load(kubectl_written, "config")
    add(doc, entry(), use=False)
    text = dump(doc)
    assert text.startswith(
        "apiVersion: v1\nclusters:\n- cluster:\n    server: https://o\n  name: other\n"
        "- name: kubegate-prod-eu\n  cluster:\n"
    )
    remove(doc, "prod-eu")
    assert dump(doc) == kubectl_written.replace("null", "[]")


def test_crlf_line_ends_a_bom_and_a_missing_final_newline_are_kept() -> None:
    text = "\ufeffapiVersion: v1\r\nkind: Config\r\ncurrent-context: x"
    doc = load(text, "config")
    add(doc, entry(), use=False)
    written = dump(doc)
    assert written.startswith("\ufeffapiVersion: v1\r\nkind: Config\r\n")
    assert "\n" not in written.replace("\r\n", "")
    remove(doc, "prod-eu")
    assert dump(doc).startswith("\ufeffapiVersion: v1\r\nkind: Config\r\ncurrent-context: x\r\n")


def test_a_yaml_1_1_file_keeps_its_directive_and_its_spelling_of_booleans() -> None:
    text = (
        "%YAML 1.1\n---\napiVersion: v1\nkind: Config\n"
        "clusters:\n- name: a\n  cluster: {server: x, insecure-skip-tls-verify: yes}\n"
        "users: []\ncontexts: []\n"
    )
    doc = load(text, "config")
    add(doc, entry(), use=False)
    assert dump(doc).startswith(text[: text.index("users")])
    remove(doc, "prod-eu")
    assert dump(doc) == text


def test_corrupt_yaml_names_the_file_and_the_line() -> None:
    with pytest.raises(KubeconfigError, match=r"^/home/me/.kube/config, line 3: not valid YAML"):
        load("apiVersion: v1\nkind: Config\nclusters: ]\n", "/home/me/.kube/config")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("- a\n- b\n", "the top level is not a mapping"),
        ("apiVersion: v1\nkind: Pod\n", "kind is 'Pod', expected 'Config'"),
        ("apiVersion: v2\nkind: Config\n", "apiVersion is 'v2', expected 'v1'"),
    ],
)
def test_a_document_that_is_not_a_config_is_refused(text: str, problem: str) -> None:
    with pytest.raises(KubeconfigError, match=f"^config: not a kubeconfig \\({problem}\\)$"):
        load(text, "config")


def test_a_section_that_is_not_a_list_is_refused() -> None:
    doc = load("apiVersion: v1\nkind: Config\nusers: {a: 1}\n", "config")
    with pytest.raises(KubeconfigError, match="'users' is not a list"):
        add(doc, entry(), use=False)


def test_a_naive_expiry_is_taken_as_utc() -> None:
    naive = TokenAuth(token="t", expires_at=datetime.datetime(2030, 1, 1, 8))
    [listed] = managed(load(standalone(entry(auth=naive)), "config"))
    assert listed.token_expires_at == datetime.datetime(2030, 1, 1, 8, tzinfo=datetime.UTC)
