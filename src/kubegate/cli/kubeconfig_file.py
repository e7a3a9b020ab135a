"""The kubeconfig file itself, handled the way kubectl (client-go's ``clientcmd``) does.

Which file: ``--kubeconfig``, else the first entry of ``$KUBECONFIG``, else
``~/.kube/config`` (:func:`target_path`). Note that kubectl itself, for an entry that is in
no file yet, writes to the first ``$KUBECONFIG`` entry that *exists* (``GetDefaultFilename``);
kubegate takes the first entry whether or not it exists, as comparable CLIs do.

Changing it (:func:`edit`) is a locked read-modify-write:

- The lock is client-go's: ``<file>.lock`` beside the file, created with
  ``O_CREAT|O_EXCL`` and removed when done (``lockFile``/``unlockFile`` in
  ``tools/clientcmd/loader.go``). kubectl fails at once when the lock exists; kubegate
  retries with short sleeps for up to ``lock_timeout`` seconds (so that concurrent
  ``kubegate ... add`` all succeed), then fails naming the lock and its age. It never
  removes a lock it did not create. For a symlinked file both ``<link>.lock`` (what kubectl
  takes for the same path) and ``<real file>.lock`` are held, in that order. A ``kubectl
  config ...`` run during kubegate's edit (a few tens of milliseconds) fails with ``open
  <file>.lock: file exists``, as it would against another kubectl.
- The write is atomic, unlike kubectl's in-place ``os.WriteFile``: a temporary file in the
  real file's directory (the symlink is followed and kept), with the file's mode (new files
  0600, a missing parent directory created 0700) and, where allowed, its owner; fsync;
  ``os.replace``; fsync of the directory.
- The previous content is kept in ``<real file>.kubegate.bak`` (one backup, same mode), written
  the same way before the file is replaced. Nothing is written when the edit changes nothing.
"""

from __future__ import annotations

import contextlib
import os
import random
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from kubegate.cli.kubeconfig_edit import Document, KubeconfigError, dump, load

T = TypeVar("T")

LOCK_SUFFIX = ".lock"
BACKUP_SUFFIX = ".kubegate.bak"
LOCK_TIMEOUT = 5.0
"""Seconds to wait for another kubectl or kubegate to release the lock."""
NEW_FILE_MODE = 0o600
NEW_DIR_MODE = 0o700


def target_path(explicit: Path | None, environ: Mapping[str, str], home: Path) -> Path:
    """The kubeconfig to edit: ``explicit``, the first non-empty ``$KUBECONFIG`` entry
    (``os.pathsep``-separated), or ``home/.kube/config``."""
    if explicit is not None:
        return explicit
    for entry in environ.get("KUBECONFIG", "").split(os.pathsep):
        if entry:
            return Path(entry)
    return home / ".kube" / "config"


def lock_path(path: Path) -> Path:
    """client-go's lock for ``path``: the same name with ``.lock`` appended."""
    return path.with_name(path.name + LOCK_SUFFIX)


def backup_path(path: Path) -> Path:
    """Where :func:`edit` keeps the previous content of ``path`` (a real file, not a link)."""
    return path.with_name(path.name + BACKUP_SUFFIX)


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _read_text(path: Path, shown: Path) -> str | None:
    """The file's text, or None when it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise KubeconfigError(
            f"cannot read {shown}: permission denied; check its owner and mode "
            f"or choose another file with --kubeconfig"
        ) from exc
    except OSError as exc:
        raise KubeconfigError(f"cannot read {shown}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KubeconfigError(f"{shown}: not a kubeconfig (not UTF-8 text)") from exc


def read(path: Path) -> Document:
    """The kubeconfig at ``path`` without locking (a missing file is an empty Config)."""
    return load(_read_text(_real(path), path) or "", str(path))


def _lock_age(lock: Path) -> str:
    try:
        age = max(0.0, time.time() - lock.stat().st_mtime)
    except OSError:
        return "of unknown age"
    return f"{age:.0f} s old" if age < 120 else f"{age / 60:.0f} min old"


def _acquire(lock: Path, deadline: float) -> None:
    """Create ``lock`` exclusively, retrying until ``deadline`` (a ``time.monotonic()``)."""
    while True:
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, NEW_FILE_MODE))
            return
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise KubeconfigError(
                    f"{lock} is held by another kubectl or kubegate ({_lock_age(lock)}); "
                    f"try again, or remove it if no kubectl/kubegate is running"
                ) from None
        except OSError as exc:
            raise KubeconfigError(f"cannot create {lock}: {exc.strerror or exc}") from exc
        time.sleep(random.uniform(0.005, 0.03))


@contextlib.contextmanager
def _locked(locks: list[Path], timeout: float) -> Iterator[None]:
    """Hold every lock in ``locks`` (in order) for the block; always release those taken."""
    deadline = time.monotonic() + timeout
    held: list[Path] = []
    try:
        for lock in locks:
            _acquire(lock, deadline)
            held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()


def write_private_file(path: Path, text: str) -> None:
    """Write a new file only its owner can read (a kubeconfig with a token), atomically."""
    _write_atomic(path, text, None)


def _write_atomic(path: Path, text: str, like: os.stat_result | None) -> None:
    """Replace ``path`` with ``text``: same mode (and owner, where allowed) as ``like``."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fchmod(file.fileno(), stat.S_IMODE(like.st_mode) if like else NEW_FILE_MODE)
            if like is not None and (like.st_uid, like.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(OSError):
                    os.fchown(file.fileno(), like.st_uid, like.st_gid)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # durability of the rename; not every filesystem can
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def edit(path: Path, change: Callable[[Document], T], *, lock_timeout: float = LOCK_TIMEOUT) -> T:
    """Apply ``change`` to the kubeconfig at ``path`` under client-go's lock and write the result
    atomically, keeping the previous content in the backup. Returns what ``change`` returns.

    When reading, parsing, ``change`` or writing fails the file is left as it was and the lock
    is released (also on ``KeyboardInterrupt``). This module's failures are
    :class:`KubeconfigError`; what ``change`` raises passes through unchanged.
    """
    try:
        path.parent.mkdir(mode=NEW_DIR_MODE, parents=True, exist_ok=True)
        real = _real(path)
        real.parent.mkdir(mode=NEW_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise KubeconfigError(f"cannot create the directory of {path}: {exc.strerror}") from exc
    # The same lock file may be reached by two names (a relative path, a symlinked directory):
    # compare them with their directories resolved, or edit() would wait for itself.
    link = _real(path.parent) / path.name
    locks = list(dict.fromkeys([lock_path(link), lock_path(real)]))
    with _locked(locks, lock_timeout):
        before = _read_text(real, path)
        doc = load(before or "", str(path))
        untouched = dump(doc)
        result = change(doc)
        after = dump(doc)
        if after == untouched:
            return result
        try:
            like = real.stat() if before is not None else None
            if before is not None:
                _write_atomic(backup_path(real), before, like)
            _write_atomic(real, after, like)
        except OSError as exc:
            raise KubeconfigError(
                f"cannot write {path}: {exc.strerror or exc}; it is unchanged"
            ) from exc
    return result
