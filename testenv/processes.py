"""Child processes of the test environment: started, watched, and always stopped.

Every child gets ``PR_SET_PDEATHSIG`` so it dies with the process that started it even when
that process is killed without a chance to clean up; normal shutdown is SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from kubegate.errors import KubegateError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# Ports handed out come from below Linux's ephemeral range (32768-60999 by default), which the
# kernel also draws from for every outgoing connection: a port picked there with bind(0) can be
# taken by somebody's connect() before the component binds it (CI saw "address already in use").
_PORT_RANGE = range(20000, 32768)
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, never the same one twice."""
    for _ in range(200):
        port = random.choice(_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise OSError("no free TCP port found on 127.0.0.1")


class ProcessFailed(KubegateError):
    """A component exited or did not become ready."""


class ManagedProcess:
    """One running component with its log file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log = log
        self._log_file = log.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            preexec_fn=_die_with_parent,  # only sets the death signal
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 20) -> str:
        """The end of the component's log, for error messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_running(self) -> None:
        """Raise, with the log's tail, when the process has exited."""
        code = self.proc.poll()
        if code is not None:
            raise ProcessFailed(
                f"{self.name} exited with code {code}; log {self.log}:\n{self.log_tail()}"
            )

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str = "ready") -> None:
        """Poll ``ready`` until it is true; fail early if the process dies."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            self.check_running()
            try:
                if ready():
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ProcessFailed(
                    f"{self.name} was not {what} after {timeout:.0f} s; log {self.log}:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_file.close()

    def kill(self) -> None:
        """SIGKILL the process group at once (a crash, not a shutdown); idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log_file.close()

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def terminate(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM one child process, SIGKILL it after ``timeout``, and reap it; idempotent."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
