"""``kubegate cluster kube-token``: the exec credential plugin kubectl runs for every command.

kubectl runs it once per invocation (and again when the token it got expires), so its warm
path — the contexts ``kubegate cluster kubeconfig add`` writes name ``--server`` and
``--cluster``, and a token for them is in the cache, still fresh — is start-up cost of
every kubectl command. That path imports nothing beyond what Python has loaded at start-up
(``os``, ``sys``, ``time``; not even ``json``, ``datetime`` or ``pathlib``): it reads one
small cache file and prints the ``ExecCredential`` stored in it. Everything else — reading
the login, minting, the lock, checking ``KUBERNETES_EXEC_INFO`` in full — is the cold path
in ``kube_token_mint.py``. ``docs/benchmarks.md`` has what each path costs.

The cache holds one token per (kubegate server, cluster) in
``$XDG_CACHE_HOME/kubegate/kube-tokens/`` (``KUBEGATE_CACHE_DIR`` overrides), one file each,
0600, written atomically; its format is :data:`MAGIC`, then expiry and mint times (Unix
seconds), the kubegate server, the cluster's proxy URL, the cluster id and the
``ExecCredential`` as kubectl reads it, a line each. With ``KUBEGATE_ACCESS_KEY`` in the
environment there is no cache: each run mints with the key (``env_login.py``).
"""

from __future__ import annotations

import os
import sys
import time

from kubegate.cli.server_url import normalise_server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime
    from typing import TextIO

    from kubegate.cli.kube_token_mint import CachedToken

MAGIC = "kubegate kube-token cache 1"
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


class Args:
    """The plugin's arguments: ``--cluster`` and ``--server``, each optional."""

    __slots__ = ("cluster", "server")

    def __init__(self, cluster: str | None = None, server: str | None = None) -> None:
        self.cluster = cluster
        self.server = server


def parse_args(argv: Sequence[str]) -> Args:
    """``--flag value`` or ``--flag=value``; anything else is a :class:`PluginError` quoting
    the usage (``-h``/``--help`` exits with it)."""
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


def margin(lifetime: float) -> float:
    """Seconds before its expiry a token stops being reused: a quarter of its lifetime, at
    most a minute (kubectl may run a long command on it; a 15-minute token is reused for 14)."""
    return min(lifetime / 4, 60.0)


def cache_dir(environ: Mapping[str, str]) -> str:
    if environ.get("KUBEGATE_CACHE_DIR"):
        return os.path.join(environ["KUBEGATE_CACHE_DIR"], "kube-tokens")
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kubegate", "kube-tokens")


def cache_file(directory: str, server: str, cluster: str) -> str:
    """The cache file of (server, cluster): readable, and distinct for distinct keys (the
    readable part is lossy, so a checksum of the exact key follows it)."""
    key = f"{server}|{cluster}"
    readable = "".join(c if c.isalnum() or c in ".-" else "_" for c in key)[:120]
    checksum = 0
    for byte in key.encode():  # FNV-1a, 32 bits: no hashlib import on the warm path
        checksum = ((checksum ^ byte) * 0x01000193) & 0xFFFFFFFF
    return os.path.join(directory, f"{readable}-{checksum:08x}.token")


def warm(path: str, environ: Mapping[str, str], now: float) -> str | None:
    """The cached ``ExecCredential`` when the token is fresh and goes where kubectl is
    sending it; None when the cold path must decide."""
    try:
        with open(path, encoding="utf-8") as cached:
            lines = cached.read().split("\n")
        expires, minted = (float(v) for v in lines[1].split())
    except (OSError, ValueError, IndexError):
        return None
    if len(lines) < 6 or lines[0] != MAGIC or now >= expires - margin(expires - minted):
        return None
    info = environ.get("KUBERNETES_EXEC_INFO")
    # kubectl writes the exec info as compact JSON (Go's encoding/json): the server is there
    # exactly like this when it is ours. Anything else is the cold path's to parse and judge.
    if info and f'"server":"{lines[3]}"' not in info:
        return None
    return lines[5] + "\n"


def get_token(
    args: Args, environ: Mapping[str, str], now: float | datetime | None = None
) -> CachedToken:
    """A fresh token for the cluster: the cached one, or one minted under the cache lock
    (the cold path; ``doctor`` uses this too). ``now``: Unix seconds or an aware datetime."""
    from kubegate.cli.kube_token_mint import get_token as cold

    if now is None:
        now = time.time()
    elif not isinstance(now, int | float):
        now = now.timestamp()
    return cold(args, environ, now)


def main(argv: Sequence[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """Run the plugin; the exit status (0: an ExecCredential is on ``out``)."""
    try:
        args = parse_args(argv)
        # An access key in the environment (CI) is never served from, or written to, the cache.
        if args.server and args.cluster and not environ.get("KUBEGATE_ACCESS_KEY"):
            server = normalise_server(args.server)
            found = warm(cache_file(cache_dir(environ), server, args.cluster), environ, time.time())
            if found is not None:
                out.write(found)
                return 0
        from kubegate.cli.kube_token_mint import exec_credential

        out.write(exec_credential(get_token(args, environ)) + "\n")
        return 0
    except PluginError as exc:
        err.write(f"kubegate: {exc}\n")
        return 1
    except OSError as exc:
        err.write(f"kubegate: cannot use the token cache: {exc.strerror or exc}\n")
        return 1


def run() -> None:
    """Entry from ``cli/entry.py``: ``sys.argv`` after ``cluster kube-token``."""
    sys.exit(main(sys.argv[3:], os.environ, sys.stdout, sys.stderr))
