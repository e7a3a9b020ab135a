"""What the agent tells the server about its cluster in its hello (``info``).

Besides its name and user prefix, the agent reports what a kubeconfig that goes straight to
the apiserver needs (``serviceaccount kubeconfig --direct``, the admin kubeconfig):

- ``api_server_url``: the apiserver URL its own kubeconfig uses, or ``--api-server-url``.
  In the cluster without that option it reports none: ``https://10.96.0.1:443`` is of no use
  outside, and the server then needs the address from its operator.
- ``api_server_ca``: the PEM of the CA that kubeconfig trusts (``certificate-authority-data``
  or the file, the in-cluster ``ca.crt`` in a pod); left out when there is none.
- ``namespace``: the agent's own namespace, where the break-glass account lives: the pod's
  (the service-account ``namespace`` file) in the cluster, else ``--namespace``, by default
  ``kube-system``.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from lightkube.config.kubeconfig import SingleConfig

from kubegate.errors import KubegateError

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_NAMESPACE = "kube-system"
"""The agent's namespace outside a cluster, unless ``--namespace`` says otherwise."""
_PEM_MARKER = "-----BEGIN CERTIFICATE-----"


def agent_namespace(
    namespace: str | None, *, in_cluster: bool, service_account_dir: Path = SERVICE_ACCOUNT_DIR
) -> str:
    """The agent's namespace: ``namespace`` when given, else the pod's in the cluster, else
    :data:`DEFAULT_NAMESPACE`."""
    if namespace:
        return namespace
    if in_cluster:
        try:
            found = (service_account_dir / "namespace").read_text().strip()
        except OSError as exc:
            raise KubegateError(f"cannot read the agent's namespace: {exc}") from exc
        if found:
            return found
    return DEFAULT_NAMESPACE


def trusted_ca_pem(config: SingleConfig) -> str | None:
    """The PEM of the CA the kubeconfig trusts, or None (system roots, or no TLS)."""
    cluster = config.cluster
    try:
        if cluster.certificate_auth_data:
            pem = base64.b64decode(cluster.certificate_auth_data).decode("ascii")
        elif cluster.certificate_auth:
            pem = Path(str(config.abs_file(cluster.certificate_auth))).read_text("ascii")
        else:
            return None
    except (OSError, ValueError, binascii.Error) as exc:
        raise KubegateError(f"cannot read the Kubernetes API's CA certificate: {exc}") from exc
    return pem if _PEM_MARKER in pem else None


def cluster_info(
    config: SingleConfig,
    *,
    in_cluster: bool,
    namespace: str,
    api_server_url: str | None = None,
    cluster_name: str = "",
    user_prefix: str = "",
) -> dict[str, str]:
    """The hello's ``info`` (see the module's docstring); ``namespace`` already resolved
    (:func:`agent_namespace`)."""
    info = {"cluster_name": cluster_name, "user_prefix": user_prefix, "namespace": namespace}
    url = api_server_url or (None if in_cluster else config.cluster.server)
    if url:
        info["api_server_url"] = url
    ca = trusted_ca_pem(config)
    if ca is not None:
        info["api_server_ca"] = ca
    return info
