"""What ``kubectl`` said, read for ``kubegate doctor``: plain text in, plain values out.

kubectl reports a failure as prose on stderr (``Error from server (Forbidden): ...``,
``Unable to connect to the server: ...``, the credential plugin's own line); at ``-v=6`` it
also logs every response it got, in klog's old text form (1.32: ``POST URL 101 Switching
Protocols in 37 milliseconds``) or its structured one (1.37: ``"Response" verb="POST"
url="URL" status="101 Switching Protocols"``). Which verb answered ``101`` tells the
transport a stream really used: WebSocket upgrades are ``GET``, SPDY upgrades ``POST``, so a
silent fallback from one to the other shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

KLOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [\w.-]+:\d+\] ")
_OLD_RESPONSE = re.compile(
    r"\] (GET|POST|PUT|PATCH|DELETE) (\S+) (\d{3}[^\n]*?) in \d+ milliseconds"
)
_NEW_RESPONSE = re.compile(r'"Response" verb="(\w+)" url="([^"]+)" status="([^"]*)"')
_FORBIDDEN = re.compile(
    r'User "(?P<user>[^"]+)" cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)"'
    r'(?: in API group "(?P<group>[^"]*)")?(?: in the namespace "(?P<namespace>[^"]+)")?'
)
_FALLBACK = re.compile(r"fallback[^:=\n]*?(?:err=\"|: |err=)(?P<why>[^\n]+?)\"?$", re.M)
_FORWARD_ERROR = re.compile(
    r'(?:an error occurred forwarding[^:]*: |"An error occurred forwarding" err=")'
    r'(?P<why>[^\n]+?)"?'
    r"(?: localPort=\S+ remotePort=\S+)?$",
    re.M,
)
STREAM_SUBRESOURCES = ("/exec", "/attach", "/portforward")
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
MAX_DETAIL = 300


@dataclass(frozen=True, slots=True)
class Response:
    """One response kubectl logged at ``-v=6``: ``status`` is empty when none came back."""

    verb: str
    url: str
    status: str


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a kubectl command failed, and what to do about it (empty when unknown)."""

    detail: str
    advice: str = ""


@dataclass(frozen=True, slots=True)
class Asker:
    """Who runs the checks, for advice that names the right command."""

    server: str
    cluster: str
    email: str
    namespace: str
    role: str | None


def responses(stderr: str) -> list[Response]:
    """Every response logged at ``-v=6``, in order, in either klog format."""
    found = []
    for line in stderr.splitlines():
        match = _NEW_RESPONSE.search(line) or _OLD_RESPONSE.search(line)
        if match:
            found.append(Response(match.group(1), match.group(2), match.group(3).strip()))
    return found


def upgraded_transport(stderr: str) -> str | None:
    """``websocket`` or ``spdy``: how the stream's upgrade succeeded (None: it did not)."""
    for response in responses(stderr):
        path = response.url.split("?", 1)[0]
        if response.status.startswith("101") and path.endswith(STREAM_SUBRESOURCES):
            return "websocket" if response.verb == "GET" else "spdy"
    return None


def raw_drops_prefix(stderr: str, prefix: str) -> bool:
    """Whether ``kubectl get --raw`` sent its path from the server's root instead of below
    the server URL's path ``prefix`` (kubectl 1.32 does; 1.37 keeps the prefix)."""
    sent = responses(stderr)
    if not prefix.strip("/") or not sent:
        return False
    return not urlsplit(sent[0].url).path.startswith(prefix.rstrip("/") + "/")


def fallback_reason(stderr: str) -> str | None:
    """Why kubectl gave up on WebSocket and fell back to SPDY (klog ``-v=4``), if it did."""
    match = _FALLBACK.search(stderr)
    return _unquote(match.group("why")) if match else None


def forward_error(stderr: str) -> str | None:
    """The error kubectl port-forward logged for a connection it could not carry."""
    match = _FORWARD_ERROR.search(stderr)
    return _unquote(match.group("why")) if match else None


def said(stderr: str) -> list[str]:
    """stderr without klog's informational lines (``-v=6`` noise) and blank lines."""
    lines = []
    for line in stderr.splitlines():
        if not line.strip() or (KLOG_LINE.match(line) and line[0] in "IW"):
            continue
        lines.append(line.strip())
    return lines


def role_needed(verb: str, resource: str, namespaced: bool) -> str:
    """The roles that would allow ``verb`` on ``resource``, in Kubernetes' default
    ``view``/``edit``/``admin`` terms (``view`` cannot exec, attach, port-forward, write or
    read secrets)."""
    if not namespaced:
        return "a cluster-wide grant"
    if resource in ("roles", "rolebindings") and verb in WRITE_VERBS:
        return "admin"
    if (
        resource.startswith(("pods/exec", "pods/attach", "pods/portforward"))
        or verb in WRITE_VERBS
        or resource == "secrets"
    ):
        return "edit or admin"
    return "view, edit or admin"


def read_failure(stderr: str, asker: Asker) -> Problem:
    """Why kubectl failed, from its stderr, as one detail and one piece of advice."""
    lines = said(stderr)
    text = "\n".join(lines)
    plugin = [line for line in lines if line.startswith("kubegate: ")]
    if plugin or "getting credentials: exec" in text:
        reason = plugin[-1].removeprefix("kubegate: ") if plugin else _last(lines)
        hint = reason.split("run: ", 1)[1] if "run: " in reason else ""
        return Problem(
            _clip(f"the credential plugin (kubegate cluster kube-token) failed: {reason}"),
            f"run: {hint}" if hint else "",
        )
    forbidden = list(_FORBIDDEN.finditer(text))
    if forbidden:
        match = forbidden[-1]
        namespace = match.group("namespace")
        needs = role_needed(match.group("verb"), match.group("resource"), namespace is not None)
        where = f" in namespace {namespace}" if namespace else " cluster-wide"
        held = f" (you hold {asker.role} there)" if asker.role and namespace else ""
        grant = (
            f"kubegate cluster access grant {asker.email or 'EMAIL'} --cluster {asker.cluster} "
            f"--role {needs.split()[0]}" + (f" --namespace {namespace}" if namespace else "")
        )
        return Problem(
            f"forbidden: {match.group('user')} cannot {match.group('verb')} "
            f"{match.group('resource')}{where}{held}",
            f"needs {needs}: ask an admin ({grant})",
        )
    if "Unauthorized" in text or "must be logged in to the server" in text:
        return Problem(
            "the proxy refused the kube token (401 Unauthorized)",
            f"run: kubegate login {asker.server} (a revoked grant or login ends its tokens)",
        )
    if "x509:" in text or "certificate signed by unknown authority" in text:
        return Problem(
            _clip(f"kubectl does not trust the proxy's TLS certificate: {_last(lines)}"),
            "the proxy's certificate must chain to the CA the server advertises "
            "(GET /api/v1/info); ask an admin",
        )
    if "TooManyRequests" in text or "too many open exec" in text or "too many open watches" in text:
        return Problem(
            _clip(
                f"the proxy refused: {_last(lines).removeprefix('error upgrading connection: ')}"
            ),
            "close other kubectl exec, attach, port-forward or watch sessions and run it again",
        )
    if "ServiceUnavailable" in text or "currently unable to handle the request" in text:
        return Problem(
            _clip(f"the proxy answered 503: {_last(lines)}"),
            "the cluster's agent may have disconnected; run kubegate doctor again",
        )
    if any(
        s in text for s in ("Unable to connect", "connection refused", "no such host", "dial tcp")
    ):
        return Problem(
            _clip(f"kubectl cannot reach the proxy: {_last(lines)}"),
            "check that the proxy URL in /api/v1/info is reachable from this machine",
        )
    return Problem(_clip(_last(lines) or "kubectl failed and said nothing on stderr"))


def versions(stdout: str) -> tuple[str | None, str | None]:
    """The client's and the server's ``gitVersion`` from ``kubectl version -o json``."""
    try:
        data = json.loads(stdout)
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    return _git_version(data.get("clientVersion")), _git_version(data.get("serverVersion"))


def skew_note(client: str | None, server: str | None) -> str:
    """A note when kubectl is more than one minor version away from the server (kubectl's
    supported skew), else nothing."""
    a, b = _minor(client), _minor(server)
    if a is None or b is None or abs(a - b) <= 1:
        return ""
    return "more than one minor version apart (kubectl's supported skew)"


def choose_pod(
    pods: Sequence[Mapping[str, Any]], wanted: str | None, namespace: str
) -> tuple[Mapping[str, Any] | None, str]:
    """The pod the pod checks use (``--pod``, else the first Running one) and why not."""

    def running(pod: Mapping[str, Any]) -> bool:
        return (pod.get("status") or {}).get("phase") == "Running"

    if wanted is not None:
        for pod in pods:
            if (pod.get("metadata") or {}).get("name") == wanted:
                if running(pod):
                    return pod, ""
                phase = (pod.get("status") or {}).get("phase") or "unknown"
                return None, f"pod {wanted} in {namespace} is {phase}, not Running"
        return None, f"no pod {wanted} in {namespace}"
    for pod in pods:
        if running(pod):
            return pod, ""
    return None, f"no running pod in {namespace}; pass --pod"


def pod_name(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("name"))


def first_container_port(pod: Mapping[str, Any]) -> int | None:
    """The first ``containerPort`` any of the pod's containers declares."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if isinstance(port.get("containerPort"), int):
                return int(port["containerPort"])
    return None


def _git_version(value: object) -> str | None:
    if isinstance(value, dict) and value.get("gitVersion"):
        return str(value["gitVersion"])
    return None


def _minor(version: str | None) -> int | None:
    match = re.match(r"v?\d+\.(\d+)", version or "")
    return int(match.group(1)) if match else None


def _last(lines: Sequence[str]) -> str:
    for line in reversed(lines):
        cleaned = KLOG_LINE.sub("", line).removeprefix("error: ")
        if cleaned:
            return cleaned
    return ""


def _unquote(text: str) -> str:
    return text.replace('\\"', '"').strip()


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
