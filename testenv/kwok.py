"""Kubernetes objects for kwok's fake node and pods: pure functions returning manifests.

kwok serves the kubelet endpoints (``containerLogs``, ``exec``, ``attach``, ``portForward``)
for its fake pods; a namespaced ``Logs``/``Exec``/``Attach``/``PortForward`` object named after
a pod says what each endpoint does for that pod.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

KWOK_GROUP = "kwok.x-k8s.io"
KWOK_VERSION = "v1alpha1"
NODE_NAME = "kwok-node-0"
CONTAINER = "app"
# The kwok CRDs the environment enables (kwok --enable-crds) and installs.
CRD_KINDS = ("Logs", "Exec", "Attach", "PortForward")

Manifest = dict[str, Any]


def node() -> Manifest:
    """The one fake node. kwok fills in its status (addresses, kubelet port) itself."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": NODE_NAME, "type": "kwok"},
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }


def pod(
    name: str,
    namespace: str,
    labels: dict[str, str] | None = None,
    ports: tuple[int, ...] = (),
) -> Manifest:
    """A pod bound to the kwok node (there is no scheduler) with one container, declaring
    ``ports`` as its ``containerPort``s (what ``kubectl port-forward pod/NAME`` and
    ``kubegate doctor`` read)."""
    container: Manifest = {"name": CONTAINER, "image": "kubegate.invalid/fake:1"}
    if ports:
        container["ports"] = [{"containerPort": port} for port in ports]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {"nodeName": NODE_NAME, "containers": [container]},
    }


def _kwok_object(kind: str, name: str, namespace: str, spec: Manifest) -> Manifest:
    return {
        "apiVersion": f"{KWOK_GROUP}/{KWOK_VERSION}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def logs(name: str, namespace: str, logs_file: str) -> Manifest:
    """Serve ``logs_file`` (CRI log format) as the pod's log; ``-f`` follows appended lines."""
    spec = {"logs": [{"containers": [CONTAINER], "logsFile": logs_file, "follow": True}]}
    return _kwok_object("Logs", name, namespace, spec)


def attach(name: str, namespace: str, logs_file: str) -> Manifest:
    """``kubectl attach`` streams ``logs_file``."""
    spec = {"attaches": [{"containers": [CONTAINER], "logsFile": logs_file}]}
    return _kwok_object("Attach", name, namespace, spec)


def exec_local(name: str, namespace: str, work_dir: str) -> Manifest:
    """``kubectl exec`` runs the given command on this machine, in ``work_dir``."""
    spec = {"execs": [{"containers": [CONTAINER], "local": {"workDir": work_dir}}]}
    return _kwok_object("Exec", name, namespace, spec)


def port_forward(name: str, namespace: str, pod_port: int, target_port: int) -> Manifest:
    """``kubectl port-forward pod <local>:<pod_port>`` reaches 127.0.0.1:``target_port``."""
    spec = {
        "forwards": [{"ports": [pod_port], "target": {"address": "127.0.0.1", "port": target_port}}]
    }
    return _kwok_object("PortForward", name, namespace, spec)


def cri_log_line(message: str, when: dt.datetime | None = None, stream: str = "stdout") -> str:
    """One line of a CRI container log file, as kubelet (and kwok) read them."""
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp} {stream} F {message}\n"
