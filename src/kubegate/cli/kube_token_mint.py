"""The exec credential plugin's cold path: the login, the cache lock, the mint.

``kube_token.py`` answers from the cache when it can; everything here runs when it cannot
(no token yet, one about to expire, no ``--server``/``--cluster``, or exec info to check in
full), which is once per token lifetime and per (server, cluster):

- the login comes from the CLI's config file; with none, or an expired one, the plugin
  says ``run: kubegate login <server>`` and fails (it never prompts: kubectl shows stderr);
  ``KUBEGATE_ACCESS_KEY`` in the environment is the login instead, and then nothing is
  cached: each run mints (``env_login.py``);
- a mint happens under an ``flock`` on the cache file's ``.lock`` and re-reads the cache
  once it holds it, so 40 kubectl processes started together mint once (kubelogin's
  ``pkg/tokencache`` does the same);
- ``KUBERNETES_EXEC_INFO`` (``provideClusterInfo: true``) names the server kubectl is
  talking to; a token is only handed to the cluster URL kubegate minted it for.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from kubegate.cli import config_store, env_login
from kubegate.cli.config_store import Login
from kubegate.cli.kube_token import MAGIC, Args, PluginError, cache_dir, cache_file, margin

API_VERSION = "client.authentication.k8s.io/v1"


@dataclass(frozen=True, slots=True)
class CachedToken:
    """A minted kube token as the cache keeps it; ``server`` is the cluster's proxy URL and
    ``login`` the kubegate server it was minted by."""

    token: str
    expires_at: dt.datetime
    minted_at: dt.datetime
    server: str
    cluster_id: str
    login: str

    def fresh(self, now: float) -> bool:
        expires, minted = self.expires_at.timestamp(), self.minted_at.timestamp()
        return now < expires - margin(expires - minted)


def exec_credential(token: CachedToken) -> str:
    """The ``ExecCredential`` kubectl reads from stdout, on one line."""
    expiry = token.expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "ExecCredential",
            "status": {"token": token.token, "expirationTimestamp": expiry},
        },
        separators=(",", ":"),
    )


def read_cache(path: str) -> CachedToken | None:
    """The cached token, or None when there is none or it cannot be read (a mint then
    replaces it)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        if lines[0] != MAGIC:
            return None
        expires, minted = (float(v) for v in lines[1].split())
        token = json.loads(lines[5])["status"]["token"]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return CachedToken(
        token=str(token),
        expires_at=dt.datetime.fromtimestamp(expires, dt.UTC),
        minted_at=dt.datetime.fromtimestamp(minted, dt.UTC),
        server=lines[3],
        cluster_id=lines[4],
        login=lines[2],
    )


def write_cache(path: str, token: CachedToken) -> None:
    lines = [
        MAGIC,
        f"{token.expires_at.timestamp()} {token.minted_at.timestamp()}",
        token.login,
        token.server.rstrip("/"),
        token.cluster_id,
        exec_credential(token),
    ]
    config_store.write_private(Path(path), "\n".join(lines) + "\n")


def forget_login(environ: Mapping[str, str], server: str) -> int:
    """Delete every cached token minted by ``server`` (at logout); how many."""
    directory = Path(cache_dir(environ))
    removed = 0
    for path in directory.glob("*.token"):
        cached = read_cache(str(path))
        if cached is not None and cached.login == server:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


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


def check_destination(token: CachedToken, wanted: str | None) -> None:
    """Refuse to hand a token to a server other than the cluster URL it was minted for."""
    if wanted is not None and wanted != token.server.rstrip("/"):
        raise PluginError(
            f"this kubeconfig context sends the token to {wanted}, but kubegate at "
            f"{token.login} serves the cluster at {token.server}; run: kubegate cluster "
            "kubeconfig add"
        )


def get_token(args: Args, environ: Mapping[str, str], now: float) -> CachedToken:
    """A fresh token for the cluster: the cached one, or one minted under the cache lock."""
    try:
        config = config_store.read(config_store.config_path(environ))
    except config_store.StoreError as exc:
        raise PluginError(str(exc)) from exc
    try:
        from_environment = env_login.environment_login(environ, config, args.server)
    except env_login.EnvironmentLoginError as exc:
        raise PluginError(str(exc)) from exc
    login = from_environment or config.login(args.server)
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
    if from_environment is not None:  # CI: nothing is read from or written to the cache
        minted = mint(login, cluster, now)
        check_destination(minted, wanted)
        return minted
    directory = cache_dir(environ)
    path = cache_file(directory, login.server, cluster)
    cached = read_cache(path)
    if cached is None or not cached.fresh(now):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with _locked(path + ".lock"):
            cached = read_cache(path)  # another process may have minted while we waited
            if cached is None or not cached.fresh(now):
                cached = mint(login, cluster, now)
                write_cache(path, cached)
    check_destination(cached, wanted)
    return cached


def mint(login: Login, cluster: str, now: float) -> CachedToken:
    """``POST /api/v1/clusters/{id}/k8s-token`` with the login's credential."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    if login.credential.expired(moment):
        raise PluginError(
            f"your kubegate login has expired; run: {config_store.login_command(login)}"
        )
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
            minted_at=moment,
            server=str(answer["server"]).rstrip("/"),
            cluster_id=str(answer["cluster_id"]),
            login=login.server,
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise PluginError(
            f"kubegate at {login.server} answered a token kubectl cannot use"
        ) from exc


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
