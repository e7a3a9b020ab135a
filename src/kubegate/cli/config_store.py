"""Where the CLI keeps its logins: one JSON file in the user's config dir, 0600.

``$XDG_CONFIG_HOME/kubegate/config.json`` (``~/.config/kubegate/config.json``) holds, per
kubegate server (keyed by its base URL), how to trust it (the CA pinned at login, or the
system's trust store, or no verification), the credential the CLI signed in with, who that
is, and the cluster selected for ``--cluster``; plus which server is current. A credential
is a bearer token with an optional expiry and an optional refresh token, so that a password
login, a pasted API token, an SSO login and an access key all fit one shape.

Standard library only: the exec credential plugin (``kube_token.py``) reads this file on
kubectl's hot path and must not pay for pydantic or Typer. Writers hold an ``flock`` on
``config.json.lock`` for the whole read-modify-write and replace the file atomically (temp
file + ``os.replace``), so concurrent ``kubegate`` processes never lose each other's login.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubegate.cli.server_url import normalise_server

FORMAT_VERSION = 1


class StoreError(Exception):
    """The config file cannot be read or written; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class Trust:
    """How the CLI verifies a server's TLS: ``ca_pem`` pinned (None: the system's roots);
    ``insecure`` skips verification altogether (``--insecure-skip-tls-verify``)."""

    ca_pem: str | None = None
    insecure: bool = False


@dataclass(frozen=True, slots=True)
class Credential:
    """A bearer credential for the REST API. ``kind`` says how it was obtained
    (``password``, ``token``, ``sso`` or ``access_key``)."""

    kind: str
    token: str
    expires_at: dt.datetime | None = None
    refresh_token: str | None = None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class SelectedCluster:
    """The cluster ``--cluster`` defaults to on one server."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Login:
    """Everything the CLI knows about one server it has signed in to."""

    server: str
    trust: Trust
    credential: Credential
    email: str = ""
    role: str = ""
    org_id: str = ""
    org_name: str = ""
    cluster: SelectedCluster | None = None


@dataclass(frozen=True, slots=True)
class Config:
    """The whole file: the logins by server URL, and the current server."""

    logins: Mapping[str, Login] = field(default_factory=dict)
    current: str | None = None

    def login(self, server: str | None) -> Login | None:
        """The login of ``server`` (None: the current one)."""
        key = server or self.current
        return self.logins.get(normalise_server(key)) if key else None

    def with_login(self, login: Login, *, make_current: bool) -> Config:
        logins = {**self.logins, login.server: login}
        return Config(logins, login.server if make_current or not self.current else self.current)

    def without(self, server: str) -> Config:
        logins = {k: v for k, v in self.logins.items() if k != server}
        current = self.current if self.current != server else next(iter(sorted(logins)), None)
        return Config(logins, current)


def login_command(login: Login) -> str:
    """What to run to log in to ``login``'s server again the way it was logged in (an SSO
    login says ``--sso``, an access key ``--access-key``)."""
    how = {"sso": " --sso", "access_key": " --access-key"}.get(login.credential.kind, "")
    return f"kubegate login {login.server}{how}"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$KUBEGATE_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/kubegate``, else
    ``~/.config/kubegate``."""
    env = os.environ if environ is None else environ
    if env.get("KUBEGATE_CONFIG_DIR"):
        return Path(env["KUBEGATE_CONFIG_DIR"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kubegate"


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / "config.json"


def read(path: Path) -> Config:
    """The config at ``path``; an empty one when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return _decode(json.loads(text) if text.strip() else {})
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise StoreError(
            f"{path} is not a kubegate config file ({exc}); move it away and log in again"
        ) from exc


@contextlib.contextmanager
def updating(path: Path) -> Iterator[list[Config]]:
    """Hold the file's lock for a read-modify-write: yields ``[config]``; put the new
    config in the list's only slot and it is written (atomically, 0600) on exit."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot lock {lock}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        before = read(path)
        box = [before]
        yield box
        if box[0] is not before:
            write_private(path, json.dumps(_encode(box[0]), indent=2) + "\n")
    finally:
        os.close(fd)  # releases the flock


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp makes it 0600
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


# -- JSON -----------------------------------------------------------------------------------


def parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _time(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _decode(data: dict[str, Any]) -> Config:
    logins: dict[str, Login] = {}
    for server, raw in (data.get("servers") or {}).items():
        trust = raw.get("tls") or {}
        cred = raw["credential"]
        cluster = raw.get("cluster")
        logins[server] = Login(
            server=server,
            trust=Trust(ca_pem=trust.get("ca_pem"), insecure=bool(trust.get("insecure"))),
            credential=Credential(
                kind=cred["kind"],
                token=cred["token"],
                expires_at=parse_time(cred.get("expires_at")),
                refresh_token=cred.get("refresh_token"),
            ),
            email=raw.get("email", ""),
            role=raw.get("role", ""),
            org_id=raw.get("org_id", ""),
            org_name=raw.get("org_name", ""),
            cluster=SelectedCluster(cluster["id"], cluster["name"]) if cluster else None,
        )
    current = data.get("current")
    return Config(logins, current if current in logins else None)


def _encode(config: Config) -> dict[str, Any]:
    servers: dict[str, Any] = {}
    for server, login in sorted(config.logins.items()):
        servers[server] = {
            "tls": {"ca_pem": login.trust.ca_pem, "insecure": login.trust.insecure},
            "credential": {
                "kind": login.credential.kind,
                "token": login.credential.token,
                "expires_at": _time(login.credential.expires_at),
                "refresh_token": login.credential.refresh_token,
            },
            "email": login.email,
            "role": login.role,
            "org_id": login.org_id,
            "org_name": login.org_name,
            "cluster": (
                {"id": login.cluster.id, "name": login.cluster.name} if login.cluster else None
            ),
        }
    return {"version": FORMAT_VERSION, "current": config.current, "servers": servers}
