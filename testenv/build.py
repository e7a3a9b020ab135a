"""Build and cache the test environment's Go components, install its system packages.

Idempotent: a component whose cache entry carries the current recipe fingerprint is not
rebuilt. Components build in parallel where memory allows; every step's output goes to the
component's ``build.log``, and a failure names the component, the command and that log.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from kubegate.errors import KubegateError
from testenv import components as c
from testenv.system import ensure_system_packages

Report = Callable[[str], None]

# A kube-apiserver link peaks at about 3 GiB; leave headroom for the rest of the machine.
_MEMORY_PER_BUILD = 4 * 1024**3
_HEARTBEAT_SECONDS = 60.0


class BuildError(KubegateError):
    """A component failed to build."""

    def __init__(self, component: str, command: Sequence[str], log: Path) -> None:
        self.component = component
        self.command = list(command)
        self.log = log
        super().__init__(
            f"building {component} failed: `{' '.join(command)}` exited non-zero; "
            f"its output is in {log}"
        )


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What happened to one component."""

    name: str
    version: str
    seconds: float
    cached: bool


def _go_env(installed: c.Installed) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOWORK": "off"})
    return env


def _run(
    args: Sequence[str], *, cwd: Path, log: Path, installed: c.Installed
) -> subprocess.CompletedProcess[str]:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run(
            args,
            cwd=cwd,
            env=_go_env(installed),
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            check=False,
        )
        out.write(proc.stdout)
    if proc.returncode != 0:
        raise BuildError(installed.component.name, args, log)
    return proc


def _module_info(module: str, version: str, cwd: Path, installed: c.Installed) -> dict[str, str]:
    proc = _run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=cwd,
        log=installed.log,
        installed=installed,
    )
    info: dict[str, str] = json.loads(proc.stdout)
    return info


def _copy_tree(source: Path, dest: Path) -> None:
    """Copy a read-only module tree from GOMODCACHE into a writable one."""
    shutil.copytree(source, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _copy_module(comp: c.GoComponent, src: Path, installed: c.Installed) -> None:
    """A writable copy of the module with ``omit_files`` removed and ``patches`` applied."""
    module_dir = Path(_module_info(comp.module, comp.module_version, src, installed)["Dir"])
    local = src / c.LOCAL_MODULE_DIR
    _copy_tree(module_dir, local)
    for rel in comp.omit_files:
        (local / rel).unlink()
    for patch in comp.patches:
        target = local / patch.path
        try:
            target.write_text(c.apply_patch(target.read_text(), patch))
        except ValueError as exc:
            with installed.log.open("a") as out:
                out.write(f"{exc}\n")
            raise BuildError(comp.name, ["patch", patch.path], installed.log) from exc


def is_built(installed: c.Installed) -> bool:
    """True when the cache holds this exact recipe's binary."""
    stamp = installed.stamp
    return (
        installed.binary.exists()
        and stamp.exists()
        and stamp.read_text().strip() == installed.component.fingerprint()
    )


def build_component(installed: c.Installed, cores: int) -> None:
    """Build one component into its cache entry, replacing whatever was there."""
    comp = installed.component
    if installed.root.exists():
        shutil.rmtree(installed.root)
    src = installed.root / "src"
    src.mkdir(parents=True)
    installed.log.write_text(f"# building {comp.name} {comp.version}\n")

    staging: list[str] = []
    release_date = ""
    if comp.kubernetes_staging or comp.stamps_kubernetes_version:
        info = _module_info(comp.module, comp.module_version, src, installed)
        if comp.kubernetes_staging:
            staging = c.staging_modules(Path(info["GoMod"]).read_text())
        if comp.stamps_kubernetes_version:
            # The .info the module proxy served: {"Version": ..., "Time": the tag's commit}.
            release_date = str(json.loads(Path(info["Info"]).read_text()).get("Time", ""))
    if comp.local_copy:
        _copy_module(comp, src, installed)
    (src / "go.mod").write_text(c.wrapper_go_mod(comp, staging))

    run = {"cwd": src, "log": installed.log, "installed": installed}
    _run(["go", "get", "-tool", f"{comp.package}@{comp.module_version}"], **run)  # type: ignore[arg-type]
    tmp = installed.root / "bin" / f".{comp.binary}.partial"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    args = comp.build_args(tmp, release_date)
    args[2:2] = ["-p", str(cores)]
    _run(args, **run)  # type: ignore[arg-type]
    tmp.rename(installed.binary)

    if comp.data_dirs:
        module_dir = _module_info(comp.module, comp.module_version, src, installed)["Dir"]
        for rel in comp.data_dirs:
            _copy_tree(Path(module_dir) / rel, installed.data / rel)
    installed.stamp.write_text(comp.fingerprint() + "\n")


def _parallel_builds(pending: int) -> int:
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        available = _MEMORY_PER_BUILD
    return max(1, min(pending, available // _MEMORY_PER_BUILD))


def _heartbeat(report: Report, running: dict[str, float], stop: threading.Event) -> None:
    while not stop.wait(_HEARTBEAT_SECONDS):
        now = time.monotonic()
        busy = ", ".join(f"{n} ({now - t:.0f} s)" for n, t in sorted(running.items()))
        if busy:
            report(f"  ... still building: {busy}")


def build_all(
    cache: Path | None = None,
    report: Report = print,
    only: Sequence[str] = (),
) -> list[BuildResult]:
    """Build every Go component that is not cached yet; report one line per component."""
    if shutil.which("go") is None:
        raise KubegateError("the test environment is built with Go, and `go` is not on PATH")
    cache = cache or c.default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    wanted = [comp for comp in c.GO_COMPONENTS if not only or comp.name in only]
    results: list[BuildResult] = []
    pending: list[c.Installed] = []
    for comp in wanted:
        installed = c.Installed.at(cache, comp)
        if is_built(installed):
            results.append(BuildResult(comp.name, comp.version, 0.0, cached=True))
            report(f"  {comp.name:<24} {comp.version:<12} cached  {installed.binary}")
        else:
            pending.append(installed)
    if not pending:
        return results

    jobs = _parallel_builds(len(pending))
    cores = os.cpu_count() or 1
    names = ", ".join(i.component.name for i in pending)
    report(f"  building {names} ({jobs} at a time; a first build takes about 10 min on 2 cores)")
    running: dict[str, float] = {}
    stop = threading.Event()
    ticker = threading.Thread(target=_heartbeat, args=(report, running, stop), daemon=True)
    ticker.start()

    def one(installed: c.Installed) -> BuildResult:
        comp = installed.component
        started = time.monotonic()
        running[comp.name] = started
        try:
            build_component(installed, cores)
        finally:
            running.pop(comp.name, None)
        seconds = time.monotonic() - started
        report(f"  {comp.name:<24} {comp.version:<12} built in {seconds:.0f} s")
        return BuildResult(comp.name, comp.version, seconds, cached=False)

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            # Longest first, so the apiserver never waits behind the small ones.
            futures = [pool.submit(one, i) for i in pending]
            errors: list[BuildError] = []
            for future in futures:
                try:
                    results.append(future.result())
                except BuildError as exc:
                    errors.append(exc)
                    report(f"  {exc.component:<24} FAILED: {exc}")
            if errors:
                raise errors[0]
    finally:
        stop.set()
    return results


def ensure_environment(cache: Path | None = None, report: Report = print) -> list[BuildResult]:
    """Install missing system packages and build missing components: everything the tests use."""
    started = time.monotonic()
    ensure_system_packages(report)
    cache = cache or c.default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    # One build at a time per cache: a second one would wipe the first's half-built
    # component under it. The second waits, then finds everything cached.
    with (cache / ".build.lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report("  another build of the test environment is running; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        results = build_all(cache, report)
    report(f"test environment ready in {time.monotonic() - started:.0f} s")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m testenv.build``: build what is missing, print progress."""
    del argv
    try:
        ensure_environment(report=lambda line: print(line, flush=True))
    except KubegateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
