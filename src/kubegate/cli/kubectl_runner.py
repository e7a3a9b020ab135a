"""Running ``kubectl`` with deadlines: to completion, or as a stream that is always reaped.

Each kubectl starts in its own session, so stopping its process group stops the credential
plugin it runs too; a stream's stdout and stderr are read on threads into lists that
:meth:`Stream.wait` watches under one condition, so a caller waits for "a line arrived" or
"kubectl exited" with a deadline instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN_TIMEOUT = 30.0
"""Deadline of one kubectl command that should end by itself."""
STOP_GRACE = 3.0
"""How long a stopped kubectl has before the next, harder signal."""


@dataclass(frozen=True, slots=True)
class Finished:
    """A kubectl that ended (``code`` None: it was killed at its deadline)."""

    code: int | None
    stdout: str
    stderr: str


@dataclass
class Stream:
    """A running kubectl whose output threads collect; :meth:`wait` waits for a condition."""

    proc: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    open_pipes: int = 2

    def pump(self, source: Any, into: list[str]) -> None:
        for line in source:
            with self.changed:
                into.append(line)
                self.changed.notify_all()
        with self.changed:
            self.open_pipes -= 1
            self.changed.notify_all()

    @property
    def err(self) -> str:
        return "".join(self.stderr)

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        """True once ``condition`` holds; False once kubectl exited (and all it wrote was
        read) or ``timeout`` passed without it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0 or self.exited():
                    return condition()
                self.changed.wait(min(left, 0.1))
        return True

    def exited(self) -> bool:
        """kubectl ended and its output is all collected."""
        return self.proc.poll() is not None and self.open_pipes == 0


def _kill_group(proc: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop kubectl as a user's Ctrl-C does, then harder; reap it.

    SIGINT first: ``kubectl port-forward`` then closes its streams and the connection
    itself, which the proxy sees end (after a SIGTERM the proxy kept the port-forward open,
    counting against the user's stream limit). SIGTERM after :data:`STOP_GRACE`, SIGKILL
    after as long again."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        _kill_group(proc, sig)
        try:
            proc.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


class Kubectl:
    """One kubectl binary and the doctor's kubeconfig."""

    def __init__(self, binary: str, kubeconfig: Path, environ: Mapping[str, str]) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.environ = {k: v for k, v in environ.items() if k != "KUBECONFIG"}

    def _popen(self, args: Sequence[str], env: Mapping[str, str] | None) -> subprocess.Popen[str]:
        """kubectl in a session of its own (so that its whole group can be signalled)."""
        return subprocess.Popen(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env={**self.environ, **(env or {})},
            start_new_session=True,
        )

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = RUN_TIMEOUT
    ) -> Finished:
        """Run to completion (killed at ``timeout``)."""
        proc = self._popen(args, env)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            return Finished(None, stdout, stderr + f"\nkubectl did not finish in {timeout:.0f} s")
        return Finished(proc.returncode, stdout, stderr)

    @contextlib.contextmanager
    def stream(self, *args: str, env: Mapping[str, str] | None = None) -> Iterator[Stream]:
        """Start a long-running kubectl; it is stopped and reaped when the block ends."""
        proc = self._popen(args, env)
        stream = Stream(proc)
        pumps = [
            threading.Thread(target=stream.pump, args=(pipe, into), daemon=True)
            for pipe, into in ((proc.stdout, stream.stdout), (proc.stderr, stream.stderr))
        ]
        for pump in pumps:
            pump.start()
        try:
            yield stream
        finally:
            stop(proc)
            for pump in pumps:
                pump.join(STOP_GRACE)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
