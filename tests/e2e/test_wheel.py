"""The wheel a user installs holds kubegate and nothing of the test environment or the demo
(those run from a checkout: `make testenv`, `make demo`)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kubegate import __version__

ROOT = Path(__file__).resolve().parents[2]
KUBEGATE = Path(sys.executable).parent / "kubegate"


@pytest.mark.e2e
def test_wheel_ships_kubegate_without_the_test_environment_or_the_demo(tmp_path: Path) -> None:
    # uv as scripts/setup runs it; the build backend (hatchling) comes from the package index.
    python = os.environ.get("PYTHON", "python3")
    built = subprocess.run(
        [python, "-m", "uv", "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("kubegate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        "kubegate",
        f"kubegate-{__version__}.dist-info",
    }, names
    assert "kubegate/cli/app.py" in names
    assert "kubegate/server/app.py" in names
    # The portal's pages and assets ship in the wheel: nothing is built at install time.
    assert "kubegate/server/templates/portal/base.html" in names
    assert "kubegate/server/static/portal.css" in names
    assert "kubegate/server/static/htmx.min.js" in names
    assert "kubegate/server/static/htmx.LICENSE.txt" in names
    assert [name for name in names if "testenv" in name or "demo" in name] == []


def test_kubegate_help_lists_no_demo_command() -> None:
    shown = subprocess.run(
        [str(KUBEGATE), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "100"},
        check=True,
    ).stdout
    commands = [line.split()[1] for line in shown.splitlines() if line.startswith("│ ")]
    assert {"server", "agent", "cluster", "version"} <= set(commands), shown
    assert "demo" not in commands, shown
    demo = subprocess.run(
        [str(KUBEGATE), "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert demo.returncode == 2 and "No such command 'demo'" in demo.stderr, demo.stderr
