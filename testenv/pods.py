"""Fake pods on the kwok node that really serve logs, exec, attach and port-forward."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from lightkube import Client
from lightkube.resources.core_v1 import Pod

from testenv import kwok
from testenv.controlplane import KWOK_RESOURCES


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        while data := sock.recv(65536):
            sock.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    """A TCP echo server on 127.0.0.1: the port-forward target of fake pods."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


@dataclass
class FakePod:
    """A running kwok pod: its log file can be appended to while ``kubectl logs -f`` follows."""

    name: str
    namespace: str
    log_file: Path
    work_dir: Path
    pod_port: int
    target_port: int
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def append_log(self, *lines: str) -> None:
        """Append lines to the container log (CRI format), as a running container would."""
        with self._lock, self.log_file.open("a") as out:
            for line in lines:
                out.write(kwok.cri_log_line(line))


def create_fake_pod(
    client: Client,
    namespace: str,
    name: str,
    directory: Path,
    log_lines: tuple[str, ...] = ("hello from kwok",),
    pod_port: int = 8080,
    target_port: int = 0,
    timeout: float = 30.0,
) -> FakePod:
    """Create a pod plus its kwok Logs, Attach, Exec and PortForward objects; wait until Running.

    ``exec`` runs commands on this machine in ``directory/<name>-work``; port ``pod_port`` of
    the pod (declared as its container's ``containerPort``) forwards to 127.0.0.1:``target_port``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    log_file = directory / f"{name}.log"
    work_dir = directory / f"{name}-work"
    work_dir.mkdir(exist_ok=True)
    pod = FakePod(name, namespace, log_file, work_dir, pod_port, target_port)
    log_file.touch()
    pod.append_log(*log_lines)
    for manifest in (
        kwok.logs(name, namespace, str(log_file)),
        kwok.attach(name, namespace, str(log_file)),
        kwok.exec_local(name, namespace, str(work_dir)),
        kwok.port_forward(name, namespace, pod_port, target_port),
    ):
        resource = KWOK_RESOURCES[manifest["kind"]]
        client.create(resource.from_dict(manifest))
    client.create(Pod.from_dict(kwok.pod(name, namespace, ports=(pod_port,))))
    deadline = time.monotonic() + timeout
    while True:
        phase = client.get(Pod, name, namespace=namespace).status
        if phase is not None and phase.phase == "Running":
            return pod
        if time.monotonic() > deadline:
            raise TimeoutError(f"pod {namespace}/{name} was not Running after {timeout:.0f} s")
        time.sleep(0.1)


class EchoTarget:
    """Context manager for an :class:`EchoServer`."""

    def __enter__(self) -> EchoServer:
        self.server = EchoServer()
        return self.server

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.close()
