"""A real ``kubegate server`` process on the embedded default, for the demo and e2e tests."""

from __future__ import annotations

import os
import secrets
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from testenv.processes import ManagedProcess, free_port


class GatewayServer:
    """``python -m kubegate server`` with SQLite and self-signed TLS in ``data_dir``."""

    admin_email = "admin@kubegate.local"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        """``extra_env`` adds ``KUBEGATE_*`` settings (the caller's own are never inherited)."""
        self.data_dir = data_dir
        self.extra_env = dict(extra_env or {})
        self.port = port or free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.proxy_port = free_port()
        self.proxy_url = f"https://127.0.0.1:{self.proxy_port}"
        self.admin_password = secrets.token_urlsafe(12)
        self._process: ManagedProcess | None = None

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.crt"

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def start(self, timeout: float = 30) -> None:
        """Start the server and wait until ``/readyz`` answers over verified TLS."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEGATE_")}
        env.update(
            KUBEGATE_DATA_DIR=str(self.data_dir),
            KUBEGATE_BOOTSTRAP_ADMIN_EMAIL=self.admin_email,
            KUBEGATE_BOOTSTRAP_ADMIN_PASSWORD=self.admin_password,
            KUBEGATE_PROXY_PORT=str(self.proxy_port),
            **self.extra_env,
        )
        self._process = ManagedProcess(
            "kubegate-server",
            [sys.executable, "-m", "kubegate", "server", "--port", str(self.port)],
            self.data_dir / "server.log",
            env=env,
        )

        def ready() -> bool:
            if not self.ca_file.exists():
                return False
            try:
                return httpx.get(f"{self.url}/readyz", verify=self._tls()).status_code == 200
            except httpx.TransportError:
                return False

        self._process.wait_until(ready, timeout=timeout, what="ready (/readyz)")

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTPS client trusting the server's CA, optionally with a bearer token."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, verify=self._tls(), headers=headers, timeout=30)

    def login(self, email: str | None = None, password: str | None = None) -> str:
        """An API token from ``POST /api/v1/auth/login``: the bootstrap admin's, or that of
        the member ``email`` with ``password``."""
        if email is None:
            email, password = self.admin_email, self.admin_password
        with self.client() as client:
            response = client.post(
                "/api/v1/auth/login", json={"email": email, "password": password}
            )
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    def add_member(self, token: str, email: str, password: str) -> dict[str, Any]:
        """Add ``email`` as a new member who logs in with ``password``; answers the member."""
        body = {"email": email, "display_name": email.split("@")[0], "password": password}
        member: dict[str, Any] = self.call(token, "POST", "/api/v1/users", body)
        return member

    def kubeconfig(self, token: str, cluster_id: str) -> str:
        """The kubeconfig (YAML, a short-lived kube token embedded) that the holder of API
        token ``token`` downloads for the cluster: what the member writes to disk."""
        with self.client(token) as client:
            response = client.post(f"/api/v1/clusters/{cluster_id}/kubeconfig")
        response.raise_for_status()
        return response.text

    def register_cluster(self, token: str, name: str) -> dict[str, Any]:
        """Register a cluster through the API; the answer holds the agent credential."""
        with self.client(token) as client:
            response = client.post("/api/v1/clusters", json={"name": name})
        response.raise_for_status()
        cluster: dict[str, Any] = response.json()["cluster"]
        cluster["agent_credential"] = response.json()["agent_credential"]
        return cluster

    def call(self, token: str, method: str, path: str, body: Any = None) -> Any:
        """One REST call as ``token``; raises on an error status, answers the JSON body."""
        with self.client(token) as client:
            response = client.request(method, path, json=body)
        response.raise_for_status()
        return response.json() if response.content else None

    def grant(
        self, token: str, cluster_id: str, email: str, role: str, namespace: str | None
    ) -> dict[str, Any]:
        """Add ``email`` as a member (if new) and grant it ``role``; answers the grant."""
        member = {"email": email, "display_name": email.split("@")[0]}
        with self.client(token) as client:
            added = client.post("/api/v1/users", json=member)
        if added.status_code not in (200, 201, 409):
            added.raise_for_status()
        body = {"email": email, "role": role, "namespace": namespace}
        grant: dict[str, Any] = self.call(
            token, "POST", f"/api/v1/clusters/{cluster_id}/access/grants", body
        )
        return grant

    def grant_status(self, token: str, cluster_id: str, grant_id: str) -> str:
        """The grant's status (pending, applied, failed, cluster_offline)."""
        page = self.call(token, "GET", f"/api/v1/clusters/{cluster_id}/access/grants?limit=200")
        found = [g["status"] for g in page["items"] if g["id"] == grant_id]
        return str(found[0]) if found else "deleted"

    def processes(self) -> list[ManagedProcess]:
        return [self._process] if self._process else []

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
