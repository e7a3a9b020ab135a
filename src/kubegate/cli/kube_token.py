"""``kubegate cluster kube-token``: the exec credential plugin kubectl runs for every command.

kubectl runs it once per invocation (and again when the token it got expires), so it is
built for the warm path: read one small cache file, check the expiry, print an
``ExecCredential`` (``client.authentication.k8s.io/v1``) — standard library only, no Typer,
Rich, httpx or pydantic. Only the process that mints (once per token lifetime) imports
httpx, through the CLI's :class:`~kubegate.cli.api.ApiClient`.

- The cache holds one token per (kubegate server, cluster) in
  ``$XDG_CACHE_HOME/kubegate/kube-tokens/`` (``KUBEGATE_CACHE_DIR`` overrides), 0600, and is
  reused until :func:`margin` before its expiry.
- A mint happens under an ``flock`` on the cache file's ``.lock`` and re-reads the cache
  once it holds it, so 40 kubectl processes started together mint once (kubelogin's
  ``pkg/tokencache`` does the same).
- It never prompts (kubectl shows its stderr and fails the command): with no valid login it
  says ``run: kubegate login <server>`` and exits 1.
- ``KUBERNETES_EXEC_INFO`` (``provideClusterInfo: true``) names the server kubectl is
  talking to; a token is only handed to the cluster URL kubegate minted it for.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kubegate.cli import config_store
from kubegate.cli.config_store import Login

API_VERSION = "client.authentication.k8s.io/v1"
TIMEOUT = 30.0
USAGE = (
    "usage: kubegate cluster kube-token [--cluster NAME|ID] [--server URL]\n"
    "Print an ExecCredential for kubectl: a short-lived kube token for the cluster, cached\n"
    "and reused until shortly before it expires. kubectl runs this for you from the context\n"
    "`kubegate cluster kubeconfig add` writes.\n"
    "  --cluster NAME|ID  the cluster (default: the one `kubegate cluster select` chose)\n"
    "  --server URL       the kubegate server (default: the current login)\n"
)


class PluginError(Exception):
    """What kubectl shows the user: one line, already saying what to do."""


@dataclass(frozen=True, slots=True)
class Args:
    cluster: str | None
    server: str | None


@dataclass(frozen=True, slots=True)
class CachedToken:
    """A minted kube token as the cache keeps it; ``server`` is the cluster's proxy URL."""

    token: str
    expires_at: dt.datetime
    minted_at: dt.datetime
    server: str
    cluster_id: str

    def fresh(self, now: dt.datetime) -> bool:
        return now < self.expires_at - margin(self.expires_at - self.minted_at)


def margin(lifetime: dt.timedelta) -> dt.timedelta:
    """How long before its expiry a token stops being reused: a quarter of its lifetime, at
    most a minute (kubectl may run a long command on it; a 15-minute token is reused for 14)."""
    return min(lifetime / 4, dt.timedelta(minutes=1))


def parse_args(argv: Sequence[str]) -> Args:
    """``--cluster`` and ``--server`` (``--flag value`` or ``--flag=value``); anything else
    is a :class:`PluginError` quoting the usage."""
    values: dict[str, str] = {}
    items = list(argv)
    while items:
        item = items.pop(0)
        name, eq, value = item.partition("=")
        if name in ("-h", "--help"):
            raise SystemExit(USAGE)
        if name not in ("--cluster", "--server"):
            raise PluginError(f"unknown argument {item!r}\n{USAGE}")
        if not eq:
            if not items:
                raise PluginError(f"{name} needs a value\n{USAGE}")
            value = items.pop(0)
        values[name[2:]] = value
    return Args(cluster=values.get("cluster"), server=values.get("server"))


def cache_dir(environ: Mapping[str, str]) -> Path:
    if environ.get("KUBEGATE_CACHE_DIR"):
        return Path(environ["KUBEGATE_CACHE_DIR"]) / "kube-tokens"
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kubegate" / "kube-tokens"


def cache_file(directory: Path, server: str, cluster: str) -> Path:
    key = hashlib.sha256(f"{server}\n{cluster}".encode()).hexdigest()[:32]
    return directory / f"{key}.json"


def read_cache(path: Path) -> CachedToken | None:
    """The cached token, or None when there is none or it cannot be read (then a mint
    replaces it)."""
    try:
        raw = json.loads(path.read_bytes())
        return CachedToken(
            token=raw["token"],
            expires_at=dt.datetime.fromisoformat(raw["expires_at"]),
            minted_at=dt.datetime.fromisoformat(raw["minted_at"]),
            server=raw["server"],
            cluster_id=raw["cluster_id"],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_cache(path: Path, token: CachedToken) -> None:
    data = {
        "token": token.token,
        "expires_at": token.expires_at.isoformat(),
        "minted_at": token.minted_at.isoformat(),
        "server": token.server,
        "cluster_id": token.cluster_id,
    }
    config_store.write_private(path, json.dumps(data))


def exec_credential(token: CachedToken) -> str:
    """The ``ExecCredential`` kubectl reads from stdout."""
    expiry = token.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "ExecCredential",
            "status": {"token": token.token, "expirationTimestamp": expiry},
        }
    )


def exec_info_server(environ: Mapping[str, str]) -> str | None:
    """The cluster server kubectl is about to call, from ``KUBERNETES_EXEC_INFO``."""
    raw = environ.get("KUBERNETES_EXEC_INFO")
    if not raw:
        return None
    try:
        server = json.loads(raw)["spec"]["cluster"]["server"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(server).rstrip("/") if server else None


def check_destination(token: CachedToken, wanted: str | None, login: str) -> None:
    """Refuse to hand a token to a server other than the cluster URL it was minted for."""
    if wanted is not None and wanted != token.server.rstrip("/"):
        raise PluginError(
            f"this kubeconfig context sends the token to {wanted}, but kubegate at {login} "
            f"serves the cluster at {token.server}; run: kubegate cluster kubeconfig add"
        )


def get_token(args: Args, environ: Mapping[str, str], now: dt.datetime) -> CachedToken:
    """A fresh token for the cluster: the cached one, or one minted under the cache lock."""
    config = config_store.read(config_store.config_path(environ))
    login = config.login(args.server)
    if login is None:
        target = args.server or "SERVER"
        raise PluginError(f"not logged in to {target}; run: kubegate login {target}")
    cluster = args.cluster or (login.cluster.id if login.cluster else None)
    if not cluster:
        raise PluginError(
            "no cluster given and none selected; pass --cluster or run: "
            "kubegate cluster select NAME"
        )
    wanted = exec_info_server(environ)
    path = cache_file(cache_dir(environ), login.server, cluster)
    cached = read_cache(path)
    if cached is not None and cached.fresh(now):
        check_destination(cached, wanted, login.server)
        return cached
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(path.with_name(path.name + ".lock")):
        cached = read_cache(path)  # another process may have minted while we waited
        if cached is None or not cached.fresh(now):
            cached = mint(login, cluster, now)
            write_cache(path, cached)
    check_destination(cached, wanted, login.server)
    return cached


def mint(login: Login, cluster: str, now: dt.datetime) -> CachedToken:
    """``POST /api/v1/clusters/{id}/k8s-token`` with the login's credential (the cold path:
    the only one that imports httpx)."""
    if login.credential.expired(now):
        raise PluginError(f"your kubegate login has expired; run: kubegate login {login.server}")
    from kubegate.cli.api import ApiClient, ApiError
    from kubegate.domain.access import CLUSTER_ID

    try:
        with ApiClient.of(login) as api:
            cluster_id = cluster
            if not CLUSTER_ID.fullmatch(cluster):
                page = api.get("/api/v1/clusters", params={"name": cluster})
                if not page["items"]:
                    raise PluginError(
                        f"kubegate at {login.server} has no cluster named {cluster!r}"
                    )
                cluster_id = str(page["items"][0]["id"])
            answer = api.post(f"/api/v1/clusters/{cluster_id}/k8s-token", {})
    except ApiError as exc:
        raise PluginError(exc.message) from exc
    try:
        return CachedToken(
            token=str(answer["token"]),
            expires_at=dt.datetime.fromisoformat(str(answer["expires_at"])),
            minted_at=now,
            server=str(answer["server"]),
            cluster_id=str(answer["cluster_id"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise PluginError(
            f"kubegate at {login.server} answered a token kubectl cannot use"
        ) from exc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def main(argv: Sequence[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Run the plugin; the exit status (0: an ExecCredential is on ``out``)."""
    try:
        token = get_token(parse_args(argv), environ, dt.datetime.now(dt.UTC))
    except PluginError as exc:
        err.write(f"kubegate: {exc}\n")
        return 1
    except config_store.StoreError as exc:
        err.write(f"kubegate: {exc}\n")
        return 1
    except OSError as exc:
        err.write(f"kubegate: cannot use the token cache: {exc.strerror or exc}\n")
        return 1
    out.write(exec_credential(token) + "\n")
    return 0


def run() -> None:
    """Entry from ``cli/entry.py``: ``sys.argv`` after ``cluster kube-token``."""
    sys.exit(main(sys.argv[3:], os.environ, sys.stdout, sys.stderr))
