"""A login from the environment: ``KUBEGATE_ACCESS_KEY``, for CI, with nothing on disk.

With ``KUBEGATE_ACCESS_KEY`` set, every command and the exec credential plugin use that key
as the login of ``KUBEGATE_SERVER`` (or ``--server``, or the config's current server), and
write nothing: no config file, no token cache (the plugin mints a kube token per kubectl
run). TLS is verified with the system's roots, or the CA in ``KUBEGATE_CA_FILE``, or the CA
pinned by a login of that server in the config, which is read but never written.

Standard library only: the exec plugin's cold path imports it.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubegate.cli.config_store import Config, Credential, Login, Trust
from kubegate.cli.server_url import normalise_server

ACCESS_KEY = "KUBEGATE_ACCESS_KEY"
SERVER = "KUBEGATE_SERVER"
CA_FILE = "KUBEGATE_CA_FILE"


class EnvironmentLoginError(Exception):
    """``KUBEGATE_ACCESS_KEY`` is set but cannot be used; the message says what to set."""


def active(environ: Mapping[str, str]) -> bool:
    """True when the environment holds an access key: commands use it, and write nothing."""
    return bool(environ.get(ACCESS_KEY))


def environment_login(
    environ: Mapping[str, str], config: Config, server: str | None = None
) -> Login | None:
    """The login ``KUBEGATE_ACCESS_KEY`` makes for ``server`` (default ``KUBEGATE_SERVER``,
    else the config's current server), or None when the variable is not set."""
    key = (environ.get(ACCESS_KEY) or "").strip()
    if not key:
        return None
    chosen = server or environ.get(SERVER) or config.current
    if not chosen:
        raise EnvironmentLoginError(
            f"{ACCESS_KEY} is set but no server is: set {SERVER}=https://kubegate.example.com"
        )
    url = normalise_server(chosen)
    stored = config.logins.get(url)
    trust = stored.trust if stored is not None else Trust()
    ca_file = environ.get(CA_FILE)
    if ca_file:
        try:
            with open(ca_file, encoding="utf-8") as pem:
                trust = Trust(ca_pem=pem.read())
        except OSError as exc:
            raise EnvironmentLoginError(
                f"{CA_FILE}={ca_file} cannot be read: {exc.strerror or exc}"
            ) from exc
    return Login(
        server=url,
        trust=trust,
        credential=Credential(kind="access_key", token=key),
        cluster=stored.cluster if stored is not None else None,
    )
