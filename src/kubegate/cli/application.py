"""What every CLI command shares: the output, the config file, the login, the cluster.

Commands get an :class:`Application` (Typer passes it in ``ctx.obj``) instead of reading
globals, so tests can point it at a temporary config dir with the environment alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import typer

from kubegate.cli import config_store, env_login
from kubegate.cli.api import ApiClient
from kubegate.cli.config_store import Config, Login
from kubegate.cli.output import Output
from kubegate.domain.access import CLUSTER_ID


class Application:
    """The output, the environment, and the logins of the user running the command."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = os.environ if environ is None else environ
        self.output = Output()
        self.config_path = config_store.config_path(self.environ)

    def config(self) -> Config:
        return config_store.read(self.config_path)

    def login(self, server: str | None = None) -> Login:
        """The login of ``server`` (default: the current one), or end with what to run.
        ``KUBEGATE_ACCESS_KEY`` in the environment makes the login (``env_login.py``)."""
        config = self.config()
        try:
            from_environment = env_login.environment_login(self.environ, config, server)
        except env_login.EnvironmentLoginError as exc:
            self.output.fail(str(exc))
        if from_environment is not None:
            return from_environment
        login = config.login(server)
        if login is not None:
            return login
        if server:
            self.output.fail(f"not logged in to {server}; run: kubegate login {server}")
        if config.logins:
            self.output.fail("no current server; run: kubegate server use SERVER")
        self.output.fail("not logged in; run: kubegate login SERVER")

    def api(self, login: Login) -> ApiClient:
        return ApiClient.of(login)

    def cluster(self, api: ApiClient, login: Login, wanted: str | None) -> dict[str, Any]:
        """The cluster ``--cluster`` names (a name or an id), else the selected one."""
        if wanted is None:
            if login.cluster is None:
                self.output.fail(
                    "which cluster? pass --cluster NAME, or choose a default: "
                    "kubegate cluster select NAME"
                )
            wanted = login.cluster.id
        page = api.get("/api/v1/clusters", params={"name": wanted})
        if page["items"]:
            return dict(page["items"][0])
        if CLUSTER_ID.fullmatch(wanted):
            return dict(api.get(f"/api/v1/clusters/{wanted}"))
        self.output.fail(
            f"{login.server} has no cluster named {wanted!r}; see: kubegate cluster list"
        )


def application(ctx: typer.Context) -> Application:
    """The :class:`Application` of this invocation (made by the root callback)."""
    app = ctx.find_object(Application)
    if app is None:
        app = ctx.ensure_object(Application)
    return app
