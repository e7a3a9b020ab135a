"""The test environment cleans up after itself and explains its build failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testenv import components as c
from testenv.build import BuildError, build_all, build_component

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

INNER_TEST = """
import json, os, time
from pathlib import Path

def test_uses_the_control_plane(control_plane):
    state = {{
        "pids": [p.pid for p in control_plane.processes()],
        "workdir": str(control_plane.workdir),
    }}
    Path({state!r}).write_text(json.dumps(state))
    if os.environ["INNER_MODE"] == "fail":
        assert False, "this test fails on purpose"
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes; its parent (the inner pytest) is gone too.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.parametrize("mode", ["fail", "sigterm", "sigint"])
def test_a_failed_or_interrupted_session_leaves_no_process_or_temp_dir(
    tmp_path: Path, mode: str
) -> None:
    state_file = tmp_path / "state.json"
    (tmp_path / "test_inner.py").write_text(INNER_TEST.format(state=str(state_file)))
    inner = subprocess.Popen(
        [
            sys.executable,
            *("-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest"),
            *("-p", "tests.fixtures.shutdown", "-p", "tests.fixtures.kube"),
            *("--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "basetemp")),
            str(tmp_path / "test_inner.py"),
        ],
        cwd=REPO,
        env={**os.environ, "INNER_MODE": mode, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not state_file.exists():
        assert inner.poll() is None, inner.communicate()[0]
        assert time.monotonic() < deadline, "the inner session never started its control plane"
        time.sleep(0.2)
    state = json.loads(state_file.read_text())
    assert len(state["pids"]) == 4  # etcd, kube-apiserver, kube-controller-manager, kwok
    if mode != "fail":
        inner.send_signal(signal.SIGTERM if mode == "sigterm" else signal.SIGINT)
    output = inner.communicate(timeout=60)[0]
    assert inner.returncode != 0, output
    assert [pid for pid in state["pids"] if _alive(pid)] == [], output
    assert not Path(state["workdir"]).exists(), output


def test_a_cached_environment_is_not_rebuilt() -> None:
    lines: list[str] = []
    results = build_all(report=lines.append)
    assert {r.name for r in results} == {comp.name for comp in c.GO_COMPONENTS}
    assert all(r.cached for r in results), lines
    assert len(lines) == len(c.GO_COMPONENTS)
    assert all(" cached " in line for line in lines)


def test_a_failed_build_names_the_component_the_command_and_the_log(tmp_path: Path) -> None:
    broken = c.GoComponent(
        name="nonexistent",
        version="1.0.0",
        module="kubegate.invalid/nonexistent",
        package="kubegate.invalid/nonexistent/cmd/x",
        binary="x",
    )
    installed = c.Installed.at(tmp_path, broken)
    with pytest.raises(BuildError) as caught:
        build_component(installed, cores=1)
    message = str(caught.value)
    assert "building nonexistent failed" in message
    assert "go get -tool kubegate.invalid/nonexistent/cmd/x@v1.0.0" in message
    assert str(installed.log) in message
    assert "kubegate.invalid/nonexistent" in installed.log.read_text()
    assert not installed.stamp.exists()
