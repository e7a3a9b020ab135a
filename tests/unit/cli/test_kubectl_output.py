"""What ``kubegate doctor``'s kubectl said, read: transports, failures, roles, pods."""

from __future__ import annotations

from typing import Any

import pytest

from kubegate.cli import kubectl_output as out

ASKER = out.Asker(
    server="https://kg.example.com",
    cluster="prod",
    email="ada@example.com",
    namespace="dev",
    role="view",
)

OLD_KLOG = (
    "I1202 13:50:12.636638   16340 round_trippers.go:560] POST https://127.0.0.1:57077/"
    "clusters/c1/api/v1/namespaces/dev/pods/web/exec?command=echo&stdout=true "
    "101 Switching Protocols in 37 milliseconds\n"
)
NEW_KLOG = (
    'I1202 13:50:13.206515   16353 round_trippers.go:632] "Response" verb="GET" '
    'url="https://127.0.0.1:57077/clusters/c1/api/v1/namespaces/dev/pods/web/attach?stdout=true"'
    ' status="101 Switching Protocols" milliseconds=23\n'
)
FORBIDDEN_EXEC = (
    "I1202 13:51:18.437613   17405 fallback.go:56] RemoteCommand fallback: unable to upgrade "
    'streaming request: pods "web" is forbidden: User "kubegate:ada@example.com" cannot get '
    'resource "pods/exec" in API group "" in the namespace "dev"\n'
    'Error from server (Forbidden): pods "web" is forbidden: User "kubegate:ada@example.com" '
    'cannot create resource "pods/exec" in API group "" in the namespace "dev"\n'
)


def test_responses_are_read_in_both_klog_formats() -> None:
    found = out.responses(OLD_KLOG + NEW_KLOG)
    assert [(r.verb, r.status) for r in found] == [
        ("POST", "101 Switching Protocols"),
        ("GET", "101 Switching Protocols"),
    ]
    assert found[1].url.endswith("/pods/web/attach?stdout=true")


def test_the_verb_of_the_upgrade_tells_the_transport() -> None:
    assert out.upgraded_transport(OLD_KLOG) == "spdy"
    assert out.upgraded_transport(NEW_KLOG) == "websocket"
    refused = OLD_KLOG.replace("101 Switching Protocols", "403 Forbidden")
    assert out.upgraded_transport(refused) is None


def test_a_fallback_to_spdy_is_read_with_its_reason_in_both_formats() -> None:
    old = "I1202 13:51:18.437613   17405 fallback.go:56] RemoteCommand fallback: bad handshake\n"
    new = 'I1202 13:51:20.5 17496 fallback.go:56] "RemoteCommand fallback" err="bad handshake"\n'
    forward = (
        "I1202 13:51:20.5 17496 fallback_dialer.go:51] fallback to secondary dialer from "
        "primary dialer err: websocket: bad handshake\n"
    )
    assert out.fallback_reason(old) == "bad handshake"
    assert out.fallback_reason(new) == "bad handshake"
    assert out.fallback_reason(forward) == "websocket: bad handshake"
    assert out.fallback_reason(OLD_KLOG) is None


def test_a_port_forward_error_is_read_in_both_formats() -> None:
    old = (
        'E1202 13:50:43.927474   16793 portforward.go:424] "Unhandled Error" err="an error '
        "occurred forwarding 38341 -> 9999: error forwarding port 9999 to pod web/dev, uid : "
        'forward not found for port 9999 in pod \\"dev/web\\""\n'
    )
    new = (
        'E1202 13:50:49.997846   17019 portforward.go:549] "An error occurred forwarding" '
        'err="error forwarding port 9999 to pod web/dev, uid : connection refused" '
        "localPort=38767 remotePort=9999\n"
    )
    assert out.forward_error(old) == (
        "error forwarding port 9999 to pod web/dev, uid : forward not found for port 9999 in "
        'pod "dev/web"'
    )
    assert (
        out.forward_error(new)
        == "error forwarding port 9999 to pod web/dev, uid : connection refused"
    )


def test_a_forbidden_exec_says_which_role_would_allow_it() -> None:
    problem = out.read_failure(FORBIDDEN_EXEC, ASKER)
    assert problem.detail == (
        "forbidden: kubegate:ada@example.com cannot create pods/exec in namespace dev "
        "(you hold view there)"
    )
    assert problem.advice == (
        "needs edit or admin: ask an admin (kubegate cluster access grant ada@example.com "
        "--cluster prod --role edit --namespace dev)"
    )


@pytest.mark.parametrize(
    ("verb", "resource", "namespaced", "needed"),
    [
        ("create", "pods/exec", True, "edit or admin"),
        ("create", "pods/portforward", True, "edit or admin"),
        ("get", "pods/attach", True, "edit or admin"),
        ("create", "configmaps", True, "edit or admin"),
        ("list", "secrets", True, "edit or admin"),
        ("list", "pods", True, "view, edit or admin"),
        ("create", "rolebindings", True, "admin"),
        ("list", "pods", False, "a cluster-wide grant"),
    ],
)
def test_the_role_needed_follows_kubernetes_default_roles(
    verb: str, resource: str, namespaced: bool, needed: str
) -> None:
    assert out.role_needed(verb, resource, namespaced) == needed


def test_a_failed_credential_plugin_says_what_kubegate_said() -> None:
    stderr = (
        "kubegate: your kubegate login has expired; run: kubegate login https://kg.example.com\n"
        "Unable to connect to the server: getting credentials: exec: executable kubegate "
        "failed with exit code 1\n"
    )
    problem = out.read_failure(stderr, ASKER)
    assert problem.detail == (
        "the credential plugin (kubegate cluster kube-token) failed: your kubegate login has "
        "expired; run: kubegate login https://kg.example.com"
    )
    assert problem.advice == "run: kubegate login https://kg.example.com"


@pytest.mark.parametrize(
    ("stderr", "starts"),
    [
        ("error: You must be logged in to the server (Unauthorized)\n", "the proxy refused"),
        (
            "Unable to connect to the server: tls: failed to verify certificate: x509: "
            "certificate signed by unknown authority\n",
            "kubectl does not trust the proxy's TLS certificate",
        ),
        (
            "Unable to connect to the server: dial tcp 127.0.0.1:6443: connect: connection "
            "refused\n",
            "kubectl cannot reach the proxy",
        ),
        (
            "Error from server (ServiceUnavailable): the cluster is offline\n",
            "the proxy answered 503",
        ),
        ("error: something new\n", "something new"),
    ],
)
def test_other_failures_are_named_for_the_hop_that_failed(stderr: str, starts: str) -> None:
    assert out.read_failure(stderr, ASKER).detail.startswith(starts)


def test_the_proxys_stream_limit_says_to_close_sessions_not_a_file_limit() -> None:
    limit = (
        "error: error upgrading connection: too many open exec/attach/port-forward streams "
        "(20); close some and try again\n"
    )
    problem = out.read_failure(limit, ASKER)
    assert problem.detail == (
        "the proxy refused: too many open exec/attach/port-forward streams (20); close some "
        "and try again"
    )
    assert problem.advice.startswith("close other kubectl exec, attach, port-forward")
    files = "Error from server (InternalError): Internal error occurred: too many open files\n"
    assert out.read_failure(files, ASKER).advice == ""


def test_klog_noise_is_not_the_reason() -> None:
    stderr = "I1202 13:50:05.622279   16226 podcmd.go:88] Defaulting container name to app\n"
    assert out.read_failure(stderr, ASKER).detail == "kubectl failed and said nothing on stderr"


def test_versions_and_a_skew_beyond_one_minor() -> None:
    text = (
        '{"clientVersion": {"gitVersion": "v1.32.4-dispatcher"},'
        ' "serverVersion": {"gitVersion": "v1.36.3"}}'
    )
    assert out.versions(text) == ("v1.32.4-dispatcher", "v1.36.3")
    assert out.versions('{"clientVersion": {"gitVersion": "v1.37.1"}}') == ("v1.37.1", None)
    assert out.versions("not json") == (None, None)
    assert out.skew_note("v1.32.4-dispatcher", "v1.36.3")
    assert out.skew_note("v1.37.1", "v1.36.3") == ""


def test_raw_paths_sent_from_the_root_are_noticed() -> None:
    dropped = (
        "I1202 13:50:12.6 16340 round_trippers.go:560] GET https://127.0.0.1:57077/api/v1/"
        "namespaces/dev/pods?watch=1 200 OK in 3 milliseconds\n"
    )
    kept = dropped.replace("57077/api", "57077/clusters/c1/api")
    assert out.raw_drops_prefix(dropped, "/clusters/c1")
    assert not out.raw_drops_prefix(kept, "/clusters/c1")
    assert not out.raw_drops_prefix(dropped, "")


def pod(name: str, phase: str, ports: list[int] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app"}
    if ports:
        container["ports"] = [{"containerPort": p} for p in ports]
    return {
        "metadata": {"name": name},
        "status": {"phase": phase},
        "spec": {"containers": [container]},
    }


def test_the_first_running_pod_is_chosen_unless_one_is_named() -> None:
    pods = [pod("job", "Succeeded"), pod("web", "Running", [8080, 9090]), pod("api", "Running")]
    chosen, why = out.choose_pod(pods, None, "dev")
    assert chosen is not None and out.pod_name(chosen) == "web" and why == ""
    assert out.first_container_port(chosen) == 8080
    named, _ = out.choose_pod(pods, "api", "dev")
    assert named is not None and out.first_container_port(named) is None


def test_no_running_pod_says_to_pass_one_and_a_named_pod_must_run() -> None:
    assert out.choose_pod([pod("job", "Succeeded")], None, "dev") == (
        None,
        "no running pod in dev; pass --pod",
    )
    assert out.choose_pod([pod("job", "Succeeded")], "job", "dev") == (
        None,
        "pod job in dev is Succeeded, not Running",
    )
    assert out.choose_pod([], "web", "dev") == (None, "no pod web in dev")
