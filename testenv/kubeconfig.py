"""Writing the admin kubeconfig of the test control plane."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def admin_kubeconfig(
    server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, name: str = "kubegate-testenv"
) -> dict[str, Any]:
    """A kubeconfig with embedded client certificate credentials."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": f"{name}-admin",
                "user": {
                    "client-certificate-data": _b64(cert_pem),
                    "client-key-data": _b64(key_pem),
                },
            }
        ],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": f"{name}-admin"}},
        ],
        "current-context": name,
        "preferences": {},
    }


def write_private(path: Path, document: dict[str, Any]) -> None:
    """Write a YAML document readable by its owner only."""
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
