"""A real ``kubegate agent`` process, for the demo and e2e tests."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from testenv.processes import ManagedProcess


class AgentProcess:
    """``python -m kubegate agent`` against a server, acting with ``kubeconfig``."""

    def __init__(
        self,
        *,
        server_url: str,
        cluster_token: str,
        kubeconfig: Path,
        log: Path,
        ca_file: Path | None = None,
        cluster_name: str = "local",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.server_url = server_url
        self.cluster_token = cluster_token
        self.kubeconfig = kubeconfig
        self.log = log
        self.ca_file = ca_file
        self.cluster_name = cluster_name
        self.extra_env = dict(extra_env or {})
        self._process: ManagedProcess | None = None

    def start(self) -> None:
        """Start the agent (it dials the server on its own; callers wait for ``online``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEGATE_")}
        # The credential travels in the environment, never on the command line.
        env.update(
            KUBEGATE_SERVER=self.server_url,
            KUBEGATE_CLUSTER_TOKEN=self.cluster_token,
            KUBEGATE_CLUSTER_NAME=self.cluster_name,
            KUBEGATE_KUBECONFIG=str(self.kubeconfig),
            **self.extra_env,
        )
        if self.ca_file is not None:
            env["KUBEGATE_CA_FILE"] = str(self.ca_file)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._process = ManagedProcess(
            "kubegate-agent", [sys.executable, "-m", "kubegate", "agent"], self.log, env=env
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.proc.poll() is None

    def check_running(self) -> None:
        if self._process is not None:
            self._process.check_running()

    def kill(self) -> None:
        """SIGKILL: the agent dies without a goodbye (a crashed pod); the kernel still
        closes its TCP connection, which is how the server notices here."""
        if self._process is not None:
            self._process.kill()
            self._process = None

    def freeze(self) -> None:
        """SIGSTOP: the agent hangs with its connection open (only heartbeats notice)."""
        if self._process is not None:
            self._process.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            self._process.proc.send_signal(signal.SIGCONT)

    def processes(self) -> list[ManagedProcess]:
        return [self._process] if self._process else []

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
