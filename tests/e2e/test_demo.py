"""`make demo` does what the README says: a granted user's kubectl get pods, logs -f and exec
through kubegate, commands that work as printed, and a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _make_demo_command() -> list[str]:
    """What `make demo` runs after its setup step: `make -n` prints the recipe, runs nothing."""
    planned = subprocess.run(
        ["make", "-n", "--no-print-directory", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert planned[0] == "scripts/setup", planned
    return shlex.split(planned[-1])


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _shown_output(lines: list[str], command: str) -> list[str]:
    """The output the demo showed under its ``$ kubectl ...`` line containing ``command``."""
    start = next(i for i, line in enumerate(lines) if line.startswith("$ ") and command in line)
    shown = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        shown.append(line.strip())
    return shown


def _run(command: str, exported: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command the demo printed to copy, in a shell that ran the printed ``export``
    (``exported``); ``VAR=value`` prefixes become its environment too."""
    words = shlex.split(command, comments=True)
    env = {**os.environ, **(exported or {})}
    while "=" in words[0]:
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return subprocess.run(words, capture_output=True, text=True, timeout=60, env=env, check=False)


def test_demo_runs_kubectl_through_kubegate_prints_working_commands_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEGATE_")}
    command = _make_demo_command()
    assert command[-2:] == ["-m", "testenv.demo"], command
    demo = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if "Press Ctrl-C to stop." in line:
                break
        output = "\n".join(lines)
        assert "Press Ctrl-C to stop." in output, output
        children = _children(demo.pid)
        # etcd, apiserver, controller-manager, kwok, kubegate server, kubegate agent
        assert len(children) >= 6, output
        assert re.search(r"grant: +dev@kubegate.local edit on namespace demo: applied", output)
        assert "registered through the API" in output
        assert re.search(r"kubegate portal: +https://127\.0\.0\.1:\d+/ ", output), output

        # What the demo ran as the granted user, with the CLI and kubectl, and showed.
        logged_in = _shown_output(lines, "kubegate login https://127.0.0.1:")
        assert any("Logged in to https://127.0.0.1:" in line for line in logged_in), output
        listed = _shown_output(lines, "kubegate cluster list")
        assert any(re.match(r"\*?\s*local\s+[0-9a-f]{32}\s+yes\s", line) for line in listed)
        added = _shown_output(lines, "kubegate cluster kubeconfig add --cluster local --use")
        assert any("Added context kubegate-local" in line for line in added), output
        pods = _shown_output(lines, "kubectl get pods")
        assert any(re.match(r"hello\s+1/1\s+Running", line) for line in pods), output
        followed = _shown_output(lines, "kubectl logs -f -n demo hello")
        assert followed[0] == "hello from kubegate's demo pod", output
        assert any(
            re.match(r"appended at .* while kubectl logs -f follows$", line) for line in followed
        ), output
        said = _shown_output(lines, "kubectl exec hello --")
        assert said == ["hello from kubegate"], output

        # The commands printed to keep going work as printed, in one shell after the export.
        commands = [line.strip() for line in lines if line.startswith("  ")]
        export = next(c for c in commands if c.startswith("export KUBECONFIG="))
        user_env = dict(word.split("=", 1) for word in shlex.split(export)[1:])
        kubeconfig = Path(user_env["KUBECONFIG"])
        assert kubeconfig.stat().st_mode & 0o777 == 0o600
        as_dev = [c for c in commands if c.startswith("kubectl ")]
        result = _run(next(c for c in as_dev if c == "kubectl get pods"), user_env)
        assert re.search(r"^hello\s+1/1\s+Running", result.stdout, re.M), result
        result = _run(next(c for c in as_dev if c.startswith("kubectl exec hello ")), user_env)
        assert result.stdout == "hello from kubegate\n", result
        result = _run(next(c for c in as_dev if " get pods -n default" in c), user_env)
        assert result.returncode != 0 and "forbidden" in result.stderr, result
        whoami = next(c for c in commands if c.endswith("kubegate whoami"))
        assert "dev@kubegate.local" in _run(whoami, user_env).stdout
        commands = [c for c in commands if c.startswith(("kubectl", "curl"))]
        result = _run(next(c for c in commands if " auth can-i " in c and "--as" in c))
        assert result.stdout.strip() == "yes", result
        curl = next(c for c in commands if c.startswith("curl") and c.endswith("/clusters"))
        result = _run(curl)
        assert '"name":"local"' in result.stdout, result
    finally:
        demo.send_signal(signal.SIGINT)
        rest = demo.communicate(timeout=60)[0]
    assert demo.returncode == 0, rest
    assert "stopped in" in rest
    assert [pid for pid in children if _alive(pid)] == []
    workdir = re.search(r"kubeconfig:\s+(/tmp/kubegate-demo-[^/]+)/", output)
    assert workdir and not Path(workdir.group(1)).exists()
