"""Commands run as the demo user (``kubegate``, ``kubectl``), each shown with its output as a
user would type it."""

from __future__ import annotations

import queue
import shlex
import subprocess
import threading
import time

from rich.console import Console
from rich.text import Text

from kubegate.errors import KubegateError
from testenv.pods import FakePod
from testenv.processes import terminate

STEP_TIMEOUT = 60.0
"""How long one step of the demo (a kubectl command, a wait) may take."""


class DemoFailed(KubegateError):
    """A step of the demo failed; the message names the step and where to look."""


class DemoCommand:
    """Runs one program (``kubectl``, ``kubegate``) as the demo user, with the user's
    environment, and shows each command as ``shown`` followed by its arguments, and its output."""

    def __init__(
        self,
        argv: list[str],
        shown: str,
        env: dict[str, str],
        console: Console,
        look_at: str,
    ) -> None:
        self.argv = argv
        self.shown = shown
        self.env = env
        self.console = console
        self.look_at = look_at

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        return [*self.argv, *args]

    def _show_command(self, args: tuple[str, ...]) -> str:
        shown = shlex.join([self.shown, *args])
        self.console.print(Text("$ ", style="bold green") + Text(shown, style="bold"))
        return shown

    def _show_output(self, text: str, style: str = "") -> None:
        for line in text.rstrip("\n").splitlines():
            self.console.print(Text(f"  {line}", style=style), highlight=False)

    def run(self, *args: str, stdin: str | None = None) -> str:
        """Run the program with ``args`` to completion (``stdin`` fed to it), show its output
        (stdout, then stderr dimmed), answer stdout; raise :class:`DemoFailed` with its stderr
        if it fails."""
        shown = self._show_command(args)
        with self.console.status(f"running {shown} ..."):
            try:
                result = subprocess.run(
                    self._argv(args),
                    capture_output=True,
                    text=True,
                    timeout=STEP_TIMEOUT,
                    input=stdin or "",
                    env=self.env,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise DemoFailed(
                    f"`{shown}` did not finish in {STEP_TIMEOUT:.0f} s (see {self.look_at})"
                ) from exc
        if result.returncode != 0:
            raise DemoFailed(
                f"`{shown}` failed (exit {result.returncode}): {result.stderr.strip()} "
                f"(see {self.look_at})"
            )
        self._show_output(result.stdout)
        self._show_output(result.stderr, style="dim")
        return result.stdout

    def follow_logs(self, pod: FakePod, first_line: str) -> None:
        """``kubectl logs -f``: wait for ``first_line``, append a line to the pod's log, show
        that it arrived while kubectl follows, then stop following."""
        args = ("logs", "-f", "-n", pod.namespace, pod.name)
        shown = self._show_command(args)
        proc = subprocess.Popen(
            self._argv(args),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            with self.console.status(f"following {shown} ..."):
                self._wait_line(proc, lines, first_line, shown)
                appended = f"appended at {time.strftime('%H:%M:%S')} while kubectl logs -f follows"
                self._show_output("(the demo appends a line to the pod's log)", style="dim")
                started = time.monotonic()
                pod.append_log(appended)
                self._wait_line(proc, lines, appended, shown)
            waited = (time.monotonic() - started) * 1000
            self._show_output(
                f"(arrived {waited:.0f} ms after it was written; the demo stops following)",
                style="dim",
            )
        finally:
            terminate(proc)
            reader.join(5)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def _wait_line(
        self, proc: subprocess.Popen[str], lines: queue.Queue[str], wanted: str, shown: str
    ) -> None:
        """Show the followed lines until ``wanted`` arrives; raise if kubectl exits or it
        takes longer than the step timeout."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                if proc.poll() is not None and lines.empty():
                    stderr = proc.stderr.read().strip() if proc.stderr else ""
                    raise DemoFailed(
                        f"`{shown}` exited ({proc.returncode}) before {wanted!r} arrived: "
                        f"{stderr} (see {self.look_at})"
                    ) from None
                continue
            self._show_output(line)
            if line == wanted:
                return
        raise DemoFailed(
            f"`{shown}` did not show {wanted!r} within {STEP_TIMEOUT:.0f} s (see {self.look_at})"
        )
