"""A throwaway PostgreSQL server for tests: a fresh cluster in a temp dir, on a free port.

PostgreSQL refuses to run as root, so when we are root the cluster belongs to the ``postgres``
OS user that Debian's ``postgresql`` package creates; otherwise it runs as the current user.
The server is started through ``setpriv``, which execs it, so the PID we hold is the
postmaster's, and ``setpriv --pdeathsig`` re-arms the parent-death signal that the kernel
clears when the user changes: if the test process is killed, the server shuts down too.
The default cluster the Debian package creates on port 5432 is never touched.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import psycopg
from psycopg import sql

from kubegate.errors import KubegateError
from testenv import components as c
from testenv.processes import ManagedProcess, ProcessFailed, free_port
from testenv.system import postgres_bin_dir

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
OS_USER = "postgres"
TEMP_PREFIX = "kubegate-pg-"
# Fast shutdown: rolls back open transactions and disconnects clients. SIGTERM would be a
# "smart" shutdown that waits for every client, and a test that leaks a connection would hang it.
_SHUTDOWN_SIGNAL = signal.SIGINT
_INITDB_TIMEOUT = 120.0
_PORT_ATTEMPTS = 3
_PORT_TAKEN = "Address already in use"
_TEMP_DIR_PATTERN = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


class PostgresError(KubegateError):
    """The test PostgreSQL server could not be set up or used."""


class PostgresNotInstalled(PostgresError):
    """The PostgreSQL server binaries (Debian package ``postgresql``) are missing."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _postmaster_pid(root: Path) -> int | None:
    try:
        first = (root / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first)
    except (OSError, ValueError):
        return None


def remove_stale_dirs(temp_root: Path | None = None) -> list[Path]:
    """Delete cluster dirs left by test runs that were SIGKILLed before they could clean up.

    A dir's name holds the PID of the process that made it; it is stale once that process and
    the server it started are both gone. Returns the dirs removed.
    """
    base = temp_root or Path(tempfile.gettempdir())
    removed = []
    for path in base.glob(f"{TEMP_PREFIX}*"):
        match = _TEMP_DIR_PATTERN.match(path.name)
        if match is None or not path.is_dir() or _pid_alive(int(match.group(1))):
            continue
        server = _postmaster_pid(path)
        if server is not None and _pid_alive(server):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _require_bin_dir() -> Path:
    found = postgres_bin_dir()
    if found is None:
        package = c.DEBIAN_PACKAGES["postgres"]
        raise PostgresNotInstalled(
            f"PostgreSQL server binaries not found ({c.POSTGRES_BIN_GLOB}): install the Debian "
            f"package `{package}` (apt-get install -y {package}) or run `python -m "
            "testenv`"
        )
    return found


class PostgresServer:
    """One PostgreSQL cluster for a test session: temp dir, free port, trust auth, no fsync.

    Use as a context manager, or call :meth:`start` and (always) :meth:`stop`. Start it from
    the thread that will outlive it: the parent-death signal fires when the starting *thread*
    exits.
    """

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.root: Path | None = None
        self.initdb_seconds: float | None = None
        self.start_seconds: float | None = None
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """DSN of the server's ``postgres`` database as the ``postgres`` superuser."""
        return self.database_url("postgres")

    @property
    def log_path(self) -> Path:
        """The server's log file (useful in failure messages)."""
        return self._started_root() / "postgres.log"

    def database_url(self, name: str) -> str:
        """DSN of database ``name`` on this server (it need not exist yet)."""
        if self.port is None:
            raise PostgresError("the PostgreSQL server is not running: call start() first")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{quote(name, safe='')}"

    def start(self) -> PostgresServer:
        """Create the cluster and start the server; returns once it accepts connections."""
        if self._process is not None:
            raise PostgresError("the PostgreSQL server is already running")
        bin_dir = _require_bin_dir()
        remove_stale_dirs()
        self.root = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        try:
            self._start(bin_dir, self.root)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, bin_dir: Path, root: Path) -> None:
        as_user = self._run_as_prefix(root)
        # A locale that always exists; the caller's LANG may name one that is not generated.
        env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        started = time.monotonic()
        self._initdb([*as_user, str(bin_dir / "initdb")], root, env)
        self.initdb_seconds = time.monotonic() - started
        started = time.monotonic()
        self._launch([*as_user, str(bin_dir / "postgres")], root, env)
        self.start_seconds = time.monotonic() - started
        log.info(
            "PostgreSQL on port %s: initdb %.2f s, start %.2f s",
            self.port,
            self.initdb_seconds,
            self.start_seconds,
        )

    @staticmethod
    def _initdb(command: list[str], root: Path, env: dict[str, str]) -> None:
        """Create the cluster in ``root/data``: superuser ``postgres``, trust auth, UTF-8."""
        initdb = [
            *command,
            "-D",
            str(root / "data"),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "--no-sync",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ]
        result = subprocess.run(
            initdb,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_INITDB_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise PostgresError(f"initdb failed (exit {result.returncode}):\n{output}")

    def _launch(self, command: list[str], root: Path, env: dict[str, str]) -> None:
        """Start the server on a free port and wait until it accepts connections."""
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            self.port = free_port()
            server_args = [
                *command,
                "-D",
                str(root / "data"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(root),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
            process = ManagedProcess(
                "postgres", server_args, root / "postgres.log", env=env, cwd=root
            )
            self._process = process
            try:
                process.wait_until(
                    self._accepts_connections,
                    timeout=self.startup_timeout,
                    what="accepting connections",
                )
                break
            except ProcessFailed:
                # free_port() only finds a port that was free a moment ago; another component
                # starting in parallel may have taken it since.
                lost_port = process.proc.poll() is not None and _PORT_TAKEN in process.log_tail()
                if not lost_port or attempt == _PORT_ATTEMPTS:
                    raise
                log.warning("PostgreSQL lost port %d to another process; retrying", self.port)
                process.stop()
                self._process = None

    @staticmethod
    def _run_as_prefix(root: Path) -> list[str]:
        """Command prefix that runs as the ``postgres`` user when we are root (else none).

        As root it also hands ``root`` (the cluster's dir and socket dir) to that user.
        """
        if os.geteuid() != 0:
            return []
        try:
            user = pwd.getpwnam(OS_USER)
        except KeyError:
            package = c.DEBIAN_PACKAGES["postgres"]
            raise PostgresNotInstalled(
                f"running as root needs the `{OS_USER}` OS user, which the Debian package "
                f"`{package}` creates (apt-get install -y {package})"
            ) from None
        os.chown(root, user.pw_uid, user.pw_gid)
        return [
            "setpriv",
            f"--reuid={user.pw_uid}",
            f"--regid={user.pw_gid}",
            "--init-groups",
            "--pdeathsig",
            _SHUTDOWN_SIGNAL.name,
            "--",
        ]

    def _accepts_connections(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            # Not listening yet, or "the database system is starting up".
            return False

    def _started_root(self) -> Path:
        if self.root is None:
            raise PostgresError("the PostgreSQL server is not running: call start() first")
        return self.root

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (empty, or a copy of database ``template``, which nobody
        may be connected to) and return its DSN."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(statement)
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting anyone still using it; no error if absent."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the server down (fast shutdown, then SIGKILL) and delete its dir; idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.proc.poll() is None:
                try:
                    os.kill(process.pid, _SHUTDOWN_SIGNAL)
                    process.proc.wait(timeout)
                except ProcessLookupError:
                    pass
                except subprocess.TimeoutExpired:
                    log.warning("PostgreSQL did not shut down in %.0f s; killing it", timeout)
            process.stop(timeout=1.0)
        root, self.root = self.root, None
        self.port = None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
