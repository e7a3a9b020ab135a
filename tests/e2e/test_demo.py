"""`make demo` does what the README says: commands that work, and a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

KUBEGATE = Path(sys.executable).parent / "kubegate"


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


def test_demo_prints_working_commands_and_stops_cleanly_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEGATE_")}
    demo = subprocess.Popen(
        [str(KUBEGATE), "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                break
        output = "".join(lines)
        assert "Press Ctrl-C to stop." in output, output
        children = _children(demo.pid)
        # etcd, apiserver, controller-manager, kwok, kubegate server, kubegate agent
        assert len(children) >= 6, output
        assert re.search(r"grant: +dev@kubegate.local view on namespace demo: applied", output)

        commands = [line.strip() for line in lines if line.strip().startswith(("kubectl", "curl"))]
        get_pods = next(c for c in commands if " get pods " in c)
        result = subprocess.run(shlex.split(get_pods), capture_output=True, text=True, timeout=60)
        assert re.search(r"^hello\s+1/1\s+Running", result.stdout, re.M), result
        logs = next(c for c in commands if " logs " in c)
        result = subprocess.run(shlex.split(logs), capture_output=True, text=True, timeout=60)
        assert result.stdout.strip() == "hello from kubegate's demo pod", result
        can_i = next(c for c in commands if " auth can-i " in c)
        result = subprocess.run(shlex.split(can_i), capture_output=True, text=True, timeout=60)
        assert result.stdout.strip() == "yes", result
        curl = next(c for c in commands if c.startswith("curl"))
        result = subprocess.run(shlex.split(curl), capture_output=True, text=True, timeout=60)
        assert '"name":"local"' in result.stdout, result
        assert "registered through the API" in output
    finally:
        demo.send_signal(signal.SIGINT)
        rest = demo.communicate(timeout=60)[0]
    assert demo.returncode == 0, rest
    assert "stopped in" in rest
    assert [pid for pid in children if _alive(pid)] == []
    workdir = re.search(r"kubeconfig:\s+(/tmp/kubegate-demo-[^/]+)/", output)
    assert workdir and not Path(workdir.group(1)).exists()
