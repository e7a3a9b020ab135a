"""A real Kubernetes control plane on loopback.

etcd, kube-apiserver (RBAC), kube-controller-manager (a few controllers, see ``CONTROLLERS``)
and a kwok node. There is no scheduler: pods name their node. ServiceAccounts get tokens
through the TokenRequest API only.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx
import yaml
from lightkube import Client, KubeConfig
from lightkube.codecs import load_all_yaml
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.core_v1 import Node
from lightkube.resources.rbac_authorization_v1 import ClusterRole

from kubegate.pki import CertificateAuthority, KeyPair, rsa_key_pem
from testenv import components as c
from testenv import kwok
from testenv.build import is_built
from testenv.kubeconfig import admin_kubeconfig, write_private
from testenv.processes import ManagedProcess, ProcessFailed, free_port

Report = Callable[[str], None]

SERVICE_CIDR = "10.0.0.0/24"
# Only what a real cluster needs for kubegate's behaviour to be real: aggregated ClusterRoles,
# namespaces that finish terminating, garbage collection, default ServiceAccounts and the CA
# ConfigMap. No node lifecycle (kwok heartbeats its node) and no workload controllers.
CONTROLLERS = (
    "clusterrole-aggregation-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "root-ca-certificate-publisher-controller",
)
_APISERVER_HOSTS = (
    "127.0.0.1",
    "localhost",
    "10.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_CRD_FILES = {
    "Logs": "kwok.x-k8s.io_logs.yaml",
    "Exec": "kwok.x-k8s.io_execs.yaml",
    "Attach": "kwok.x-k8s.io_attaches.yaml",
    "PortForward": "kwok.x-k8s.io_portforwards.yaml",
}

# Generic lightkube resources for kwok's per-pod behaviour objects.
KWOK_RESOURCES = {
    kind: create_namespaced_resource(kwok.KWOK_GROUP, kwok.KWOK_VERSION, kind, plural)
    for kind, plural in (
        ("Logs", "logs"),
        ("Exec", "execs"),
        ("Attach", "attaches"),
        ("PortForward", "portforwards"),
    )
}


def installed_binary(cache: Path, component: c.GoComponent) -> Path:
    """The cached binary of ``component``; a clear error when it was never built."""
    installed = c.Installed.at(cache, component)
    if not is_built(installed):
        raise ProcessFailed(
            f"{component.name} {component.version} is not built in {cache}: "
            "run `make testenv` (or `python -m testenv`) first"
        )
    return installed.binary


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to reach the apiserver as the test superuser."""

    server: str
    ca_pem: bytes
    admin: KeyPair
    kubeconfig: Path
    ca_file: Path
    admin_cert_file: Path
    admin_key_file: Path

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context trusting the cluster CA and presenting the admin certificate."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        ctx.load_cert_chain(self.admin_cert_file, self.admin_key_file)
        return ctx


class ControlPlane:
    """Starts and stops etcd, kube-apiserver and kwok in ``workdir``."""

    def __init__(
        self,
        workdir: Path | None = None,
        cache: Path | None = None,
        report: Report = lambda _line: None,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kubegate-cp-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cache = cache or c.default_cache_dir()
        self._report = report
        self._processes: list[ManagedProcess] = []
        self._credentials: Credentials | None = None
        self.kubelet_port = 0

    @property
    def credentials(self) -> Credentials:
        if self._credentials is None:
            raise RuntimeError("the control plane is not started")
        return self._credentials

    def admin_client(self) -> Client:
        """A lightkube client authenticated as ``admin`` (group ``system:masters``)."""
        return Client(KubeConfig.from_file(self.credentials.kubeconfig), field_manager="kubegate")

    def start(self) -> Credentials:
        """Start everything; returns once the kwok node is Ready."""
        started = time.monotonic()
        binaries = {
            comp.name: installed_binary(self.cache, comp)
            for comp in (c.ETCD, c.KUBE_APISERVER, c.KUBE_CONTROLLER_MANAGER, c.KWOK)
        }
        try:
            etcd_url = self._start_etcd(binaries["etcd"])
            self._credentials = self._start_apiserver(binaries["kube-apiserver"], etcd_url)
            client = self.admin_client()
            try:
                self._start_controller_manager(binaries["kube-controller-manager"], client)
                self._start_kwok(binaries["kwok"], client)
            finally:
                client.close()
        except BaseException:
            self.stop()
            raise
        self._report(
            f"control plane up at {self.credentials.server} in {time.monotonic() - started:.1f} s"
        )
        return self.credentials

    def _spawn(self, name: str, args: list[str]) -> ManagedProcess:
        proc = ManagedProcess(name, args, self.workdir / f"{name}.log")
        self._processes.append(proc)
        return proc

    def _start_etcd(self, binary: Path) -> str:
        client, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{client}"
        proc = self._spawn(
            "etcd",
            [
                str(binary),
                "--data-dir",
                str(self.workdir / "etcd"),
                "--listen-client-urls",
                url,
                "--advertise-client-urls",
                url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        proc.wait_until(healthy, timeout=30, what="healthy")
        return url

    def _write_pki(self, server: str) -> Credentials:
        pki = self.workdir / "pki"
        pki.mkdir(mode=0o700)
        ca = CertificateAuthority.create("kubegate-testenv-ca")
        (pki / "ca.crt").write_bytes(ca.cert_pem)
        ca.issue("kube-apiserver", hosts=_APISERVER_HOSTS, server=True).write(
            pki / "apiserver.crt", pki / "apiserver.key"
        )
        admin = ca.issue("admin", organizations=("system:masters",), client=True)
        admin.write(pki / "admin.crt", pki / "admin.key")
        sa_key, sa_pub = rsa_key_pem()
        (pki / "sa.key").write_bytes(sa_key)
        (pki / "sa.pub").write_bytes(sa_pub)
        kubeconfig = self.workdir / "admin.kubeconfig"
        write_private(
            kubeconfig, admin_kubeconfig(server, ca.cert_pem, admin.cert_pem, admin.key_pem)
        )
        return Credentials(
            server=server,
            ca_pem=ca.cert_pem,
            admin=admin,
            kubeconfig=kubeconfig,
            ca_file=pki / "ca.crt",
            admin_cert_file=pki / "admin.crt",
            admin_key_file=pki / "admin.key",
        )

    def _start_apiserver(self, binary: Path, etcd_url: str) -> Credentials:
        port = free_port()
        creds = self._write_pki(f"https://127.0.0.1:{port}")
        pki = self.workdir / "pki"
        proc = self._spawn(
            "kube-apiserver",
            [
                str(binary),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--v=1",
            ],
        )
        ctx = creds.ssl_context()

        def ready() -> bool:
            try:
                response = httpx.get(f"{creds.server}/readyz", verify=ctx, timeout=2)
            except httpx.TransportError:
                return False
            return response.status_code == 200

        proc.wait_until(ready, timeout=90, what="ready (/readyz)")
        return creds

    def _install_kwok_crds(self, client: Client) -> None:
        crd_dir = c.Installed.at(self.cache, c.KWOK).data / "kustomize/crd/bases"
        for kind in kwok.CRD_KINDS:
            for obj in load_all_yaml((crd_dir / _CRD_FILES[kind]).read_text()):
                client.create(obj)
        names = [
            f"{plural}.{kwok.KWOK_GROUP}"
            for plural in ("logs", "execs", "attaches", "portforwards")
        ]
        deadline = time.monotonic() + 30
        while True:
            crds = [client.get(CustomResourceDefinition, name) for name in names]
            if all(
                any(
                    cond.type == "Established" and cond.status == "True"
                    for cond in (crd.status.conditions or [])
                )
                for crd in crds
                if crd.status is not None
            ) and all(crd.status is not None for crd in crds):
                return
            if time.monotonic() > deadline:
                raise ProcessFailed("kwok's CustomResourceDefinitions were not established")
            time.sleep(0.1)

    def _start_controller_manager(self, binary: Path, client: Client) -> None:
        proc = self._spawn(
            "kube-controller-manager",
            [
                str(binary),
                f"--kubeconfig={self.credentials.kubeconfig}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--root-ca-file={self.credentials.ca_file}",
                "--secure-port=0",
                "--v=1",
            ],
        )

        def roles_aggregated() -> bool:
            return all(client.get(ClusterRole, name).rules for name in ("view", "edit", "admin"))

        proc.wait_until(roles_aggregated, timeout=60, what="aggregating the view/edit/admin roles")

    def _start_kwok(self, binary: Path, client: Client) -> None:
        self._install_kwok_crds(client)
        client.create(Node.from_dict(kwok.node()))
        self.kubelet_port = free_port()
        proc = self._spawn(
            "kwok",
            [
                str(binary),
                f"--kubeconfig={self.credentials.kubeconfig}",
                "--manage-all-nodes=true",
                "--node-ip=127.0.0.1",
                f"--node-port={self.kubelet_port}",
                f"--server-address=127.0.0.1:{self.kubelet_port}",
                f"--enable-crds={','.join(kwok.CRD_KINDS)}",
            ],
        )

        def node_ready() -> bool:
            node = client.get(Node, kwok.NODE_NAME)
            conditions = (node.status.conditions or []) if node.status else []
            return any(cond.type == "Ready" and cond.status == "True" for cond in conditions)

        proc.wait_until(node_ready, timeout=60, what="serving a Ready node")

    def stop(self) -> None:
        """Stop every process (newest first) and remove a work dir this object created."""
        errors: list[BaseException] = []
        for proc in reversed(self._processes):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self._processes.clear()
        if self._own_workdir:
            _remove_tree(self.workdir)
        if errors:
            raise errors[0]

    def processes(self) -> list[ManagedProcess]:
        return list(self._processes)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def dump_kubeconfig(creds: Credentials) -> str:
    """The admin kubeconfig as YAML text."""
    return yaml.safe_dump(yaml.safe_load(creds.kubeconfig.read_text()), sort_keys=False)
