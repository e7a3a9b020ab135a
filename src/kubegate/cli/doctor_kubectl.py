"""``kubegate doctor``'s checks through ``kubectl``: the hops a user's kubectl takes.

kubectl runs with a standalone kubeconfig in a private temp dir (the exec plugin, as
``kubegate cluster kubeconfig add`` writes it), so what passes here is what the user's own
context does. Every call has a deadline (``kubectl_runner.py``); reading what kubectl said
is ``kubectl_output.py``'s. Streams prove their transport: they run at ``-v=6``, where
kubectl logs which request answered ``101 Switching Protocols`` (a WebSocket upgrade is a
``GET``, SPDY's a ``POST``), so a silent fallback from WebSocket to SPDY fails its row.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from pathlib import Path
from typing import Any

from kubegate.cli import kubectl_output as out
from kubegate.cli.doctor_report import Verdict
from kubegate.cli.kubectl_runner import Finished, Kubectl, Stream

START_TIMEOUT = 20.0
"""How long a stream may take to open (kubectl starts, runs the plugin, upgrades)."""
HOLD_SECONDS = 2.0
"""How long an open stream must stay up (``logs -f``, ``attach``) to pass."""
TRANSPORTS = ("websocket", "spdy")
TRANSPORT_NAMES = {"websocket": "WebSocket", "spdy": "SPDY"}


def transport_env(transport: str) -> dict[str, str]:
    """kubectl's switches between WebSocket and SPDY, both set so a user's own don't count."""
    websocket = str(transport == "websocket").lower()
    return {
        "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": websocket,
        "KUBECTL_PORT_FORWARD_WEBSOCKETS": websocket,
    }


class KubectlChecks:
    """The kubectl rows, in the order the doctor runs them; they share what earlier ones
    found (the pods listed, the pod chosen)."""

    def __init__(
        self, kubectl: Kubectl, asker: out.Asker, scratch_dir: Path, api_prefix: str
    ) -> None:
        """``api_prefix`` is the cluster URL's path on the proxy (``/clusters/<id>``):
        ``kubectl get --raw`` takes a path from the server's root, not from that URL."""
        self.kubectl = kubectl
        self.asker = asker
        self.api_prefix = api_prefix.rstrip("/")
        self.namespace = asker.namespace
        self.scratch_dir = scratch_dir
        self.pods: list[dict[str, Any]] = []
        self.pod: str | None = None
        self.port: int | None = None
        self.client_version: str | None = None
        self.server_version: str | None = None

    def _failed(self, result: Finished | Stream) -> Verdict:
        stderr = result.stderr if isinstance(result, Finished) else result.err
        problem = out.read_failure(stderr, self.asker)
        return Verdict.failed(problem.detail, problem.advice)

    def version(self) -> Verdict:
        result = self.kubectl.run("version", "-o", "json")
        self.client_version, self.server_version = out.versions(result.stdout)
        if result.code != 0 or self.server_version is None:
            return self._failed(result)
        note = out.skew_note(self.client_version, self.server_version)
        detail = (
            f"kubectl {self.client_version} ({self.kubectl.binary}); "
            f"Kubernetes {self.server_version} through kubegate"
        )
        if note:
            return Verdict.ok(f"{detail}; {note}", "use a kubectl within one minor version")
        return Verdict.ok(detail)

    def get(self) -> Verdict:
        result = self.kubectl.run("get", "pods", "-n", self.namespace, "-o", "json")
        if result.code != 0:
            return self._failed(result)
        try:
            self.pods = list(json.loads(result.stdout).get("items") or [])
        except (ValueError, AttributeError):
            return Verdict.failed("kubectl get pods -o json printed something that is not JSON")
        return Verdict.ok(f"kubectl get pods -n {self.namespace}: {len(self.pods)} pod(s)")

    def watch(self) -> Verdict:
        path = f"/api/v1/namespaces/{self.namespace}/pods?watch=1&timeoutSeconds=2"
        result = self.kubectl.run("get", "--raw", path, "-v=6")
        advice = ""
        if out.raw_drops_prefix(result.stderr, self.api_prefix):
            # kubectl 1.32 sends --raw paths from the server's root, dropping /clusters/<id>
            result = self.kubectl.run("get", "--raw", self.api_prefix + path, "-v=6")
            advice = f"this kubectl sends --raw paths from the root: prefix {self.api_prefix}"
        if result.code != 0:
            return self._failed(result)
        events = sum(1 for line in result.stdout.splitlines() if line.strip())
        return Verdict.ok(f"a 2 s watch on pods ended cleanly ({events} event(s))", advice)

    def choose_pod(self, wanted: str | None) -> Verdict:
        pod, why = out.choose_pod(self.pods, wanted, self.namespace)
        if pod is None:
            if wanted:
                return Verdict.failed(why, f"pass --pod with a Running pod of {self.namespace}")
            return Verdict.skipped(why)
        self.pod = out.pod_name(pod)
        self.port = out.first_container_port(pod)
        how = "given" if wanted else "the first Running pod"
        port = f", containerPort {self.port}" if self.port else ", no containerPort"
        return Verdict.ok(f"{self.pod} ({how}{port})")

    def logs(self) -> Verdict:
        assert self.pod is not None
        with self.kubectl.stream(
            "logs", "-f", self.pod, "-n", self.namespace, "--tail=1", "-v=6"
        ) as s:

            def opened() -> bool:
                return bool(s.stdout) or any(
                    r.status.startswith("200") for r in out.responses(s.err) if "/log" in r.url
                )

            if not s.wait(opened, START_TIMEOUT):
                return (
                    self._failed(s)
                    if s.exited()
                    else Verdict.failed(
                        f"kubectl logs -f did not open the stream in {START_TIMEOUT:.0f} s"
                    )
                )
            if s.stdout:
                return Verdict.ok(f"a line arrived: {s.stdout[0].strip()[:80]!r}")
            if s.wait(lambda: bool(s.stdout), HOLD_SECONDS):
                return Verdict.ok(f"a line arrived: {s.stdout[0].strip()[:80]!r}")
            if s.exited() and s.proc.returncode != 0:
                return self._failed(s)
            return Verdict.ok(f"the stream stayed open for {HOLD_SECONDS:.0f} s (no new line)")

    def _transport_problem(self, stderr: str, transport: str) -> Verdict | None:
        used = out.upgraded_transport(stderr)
        if used == transport:
            return None
        if used is None:
            return Verdict.failed(
                f"kubectl never upgraded the connection to {TRANSPORT_NAMES[transport]}"
            )
        why = out.fallback_reason(stderr) or "no reason logged"
        return Verdict.failed(
            f"kubectl fell back to {TRANSPORT_NAMES[used]}: the {TRANSPORT_NAMES[transport]} "
            f"upgrade failed ({why})",
            "something between kubectl and the proxy (a load balancer?) does not pass "
            f"{TRANSPORT_NAMES[transport]} upgrades",
        )

    def exec(self, transport: str) -> Verdict:
        assert self.pod is not None
        result = self.kubectl.run(
            "exec",
            self.pod,
            "-n",
            self.namespace,
            "-v=6",
            "--",
            "echo",
            "kubegate-doctor",
            env=transport_env(transport),
        )
        if result.code != 0:
            return self._failed(result)
        if "kubegate-doctor" not in result.stdout:
            return Verdict.failed(
                f"exec ran but printed {result.stdout[:80]!r}, not kubegate-doctor"
            )
        return self._transport_problem(result.stderr, transport) or Verdict.ok(
            f"echo kubegate-doctor ran in {self.pod} over {TRANSPORT_NAMES[transport]}"
        )

    def attach(self, transport: str) -> Verdict:
        assert self.pod is not None
        with self.kubectl.stream(
            "attach", self.pod, "-n", self.namespace, "-v=6", env=transport_env(transport)
        ) as s:
            if not s.wait(lambda: out.upgraded_transport(s.err) is not None, START_TIMEOUT):
                return (
                    self._failed(s)
                    if s.exited()
                    else Verdict.failed(f"kubectl attach did not attach in {START_TIMEOUT:.0f} s")
                )
            problem = self._transport_problem(s.err, transport)
            if problem is not None:
                return problem
            if s.wait(s.exited, HOLD_SECONDS) and s.proc.returncode != 0:
                return self._failed(s)
            return Verdict.ok(
                f"attached to {self.pod} over {TRANSPORT_NAMES[transport]} and stayed "
                f"{HOLD_SECONDS:.0f} s"
            )

    def cp(self, transport: str, path: str) -> Verdict:
        assert self.pod is not None
        target = self.scratch_dir / f"cp-{transport}"
        result = self.kubectl.run(
            "cp",
            f"{self.namespace}/{self.pod}:{path}",
            str(target),
            "-v=6",
            env=transport_env(transport),
        )
        if result.code != 0:
            return self._failed(result)
        if not target.is_file():
            return Verdict.failed(
                f"kubectl cp ended 0 but {path} did not arrive", "pass --cp-path FILE"
            )
        size = target.stat().st_size
        return self._transport_problem(result.stderr, transport) or Verdict.ok(
            f"downloaded {path} ({size} bytes) over {TRANSPORT_NAMES[transport]}"
        )

    def port_forward(self, transport: str) -> Verdict:
        assert self.pod is not None and self.port is not None
        forwarding = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")
        with self.kubectl.stream(
            "port-forward",
            "-n",
            self.namespace,
            f"pod/{self.pod}",
            f":{self.port}",
            "-v=6",
            env=transport_env(transport),
        ) as s:

            def ready() -> bool:
                return any(forwarding.search(line) for line in s.stdout)

            if not s.wait(ready, START_TIMEOUT):
                return (
                    self._failed(s)
                    if s.exited()
                    else Verdict.failed(
                        f"kubectl port-forward did not say Forwarding in {START_TIMEOUT:.0f} s"
                    )
                )
            # stdout and stderr are read apart: the upgrade's log line may trail "Forwarding".
            s.wait(lambda: out.upgraded_transport(s.err) is not None, HOLD_SECONDS)
            problem = self._transport_problem(s.err, transport)
            if problem is not None:
                return problem
            local = next(int(m.group(1)) for line in s.stdout if (m := forwarding.search(line)))
            return self._connect(s, local, transport)

    def _connect(self, s: Stream, local: int, transport: str) -> Verdict:
        try:
            with socket.create_connection(("127.0.0.1", local), timeout=5) as sock:
                sock.settimeout(1.0)
                try:
                    closed = sock.recv(1) == b""
                except TimeoutError:
                    closed = False  # open and quiet: the pod's port accepted it
        except OSError as exc:
            return Verdict.failed(f"cannot connect to kubectl's local port {local}: {exc}")
        if closed:
            s.wait(lambda: out.forward_error(s.err) is not None, 2.0)
            why = out.forward_error(s.err) or "kubectl closed the connection"
            return Verdict.failed(
                f"the pod did not accept a connection on port {self.port}: {why}",
                "check that something in the pod listens on that port",
            )
        return Verdict.ok(
            f"local port {local} -> {self.pod}:{self.port} over {TRANSPORT_NAMES[transport]}; "
            "a connection was accepted"
        )

    def write(self) -> Verdict:
        name = f"kubegate-doctor-{uuid.uuid4().hex[:8]}"
        made = self.kubectl.run(
            "create", "configmap", name, "-n", self.namespace, "--from-literal=by=kubegate-doctor"
        )
        if made.code != 0:
            return self._failed(made)
        gone = self.kubectl.run("delete", "configmap", name, "-n", self.namespace)
        if gone.code != 0:
            problem = out.read_failure(gone.stderr, self.asker)
            return Verdict.failed(
                f"created configmap {name} but could not delete it: {problem.detail}",
                f"delete it: kubectl delete configmap {name} -n {self.namespace}",
            )
        return Verdict.ok(f"created and deleted configmap {name} in {self.namespace}")
