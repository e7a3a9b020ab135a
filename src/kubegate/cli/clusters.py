"""``kubegate cluster list|select|kube-token``: the clusters of your organisation."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Any

import typer

from kubegate.cli import config_store, kube_token
from kubegate.cli.application import application
from kubegate.cli.config_store import SelectedCluster
from kubegate.cli.login import OutputOption
from kubegate.cli.output import Column, Format, ago

ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        "-c",
        help="The cluster's name or id (default: the one `kubegate cluster select` chose).",
        show_default=False,
    ),
]


def access_text(grants: list[dict[str, Any]]) -> str:
    """A caller's grants on a cluster, as a table cell: ``edit (ns dev), view``."""
    if not grants:
        return "none"
    return ", ".join(
        f"{g['role']}"
        + (f" (ns {g['namespace']})" if g.get("namespace") else "")
        + ("" if g.get("status") == "applied" else f" [{g.get('status')}]")
        for g in grants
    )


def all_clusters(api: Any) -> Iterator[dict[str, Any]]:
    """Every cluster of the organisation, following the listing's cursor."""
    cursor: str | None = None
    while True:
        page = api.get("/api/v1/clusters", params={"cursor": cursor} if cursor else None)
        yield from page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return


def cluster_list(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """List the clusters of your organisation, whether they are online, and your access.

    Examples:

    ```
    kubegate cluster list
    kubegate cluster list -o json
    ```
    """
    app = application(ctx)
    login = app.login()
    with app.api(login) as api:
        rows = list(all_clusters(api))
    selected = login.cluster.id if login.cluster else None
    for row in rows:
        row["selected"] = row["id"] == selected
    columns = [
        Column("", "selected", lambda v: "*" if v else ""),
        Column("name", "name"),
        Column("id", "id"),
        Column("online", "online", lambda v: "yes" if v else "no"),
        Column("last seen", "last_seen_at", ago),
        Column("your access", "my_access", lambda v: access_text(v or [])),
    ]
    app.output.listing(
        rows, columns, output, empty="No clusters yet; an admin registers one in the portal."
    )


def cluster_select(
    ctx: typer.Context,
    cluster: Annotated[str, typer.Argument(help="The cluster's name or id.")],
) -> None:
    """Make a cluster the default for every --cluster on the current server.

    Example:

    ```
    kubegate cluster select prod
    ```
    """
    app = application(ctx)
    login = app.login()
    with app.api(login) as api:
        chosen = app.cluster(api, login, cluster)
    with config_store.updating(app.config_path) as box:
        current = box[0].logins.get(login.server)
        if current is None:
            app.output.fail(f"not logged in to {login.server} any more")
        selected = SelectedCluster(str(chosen["id"]), str(chosen["name"]))
        box[0] = box[0].with_login(replace(current, cluster=selected), make_current=False)
    app.output.say(f"Selected cluster {chosen['name']} ({chosen['id']}) on {login.server}.")


def cluster_kube_token(
    cluster: ClusterOption = None,
    server: Annotated[
        str | None,
        typer.Option(help="The kubegate server (default: the current login).", show_default=False),
    ] = None,
) -> None:
    """Print an ExecCredential for kubectl (the exec credential plugin).

    kubectl runs this from the contexts `kubegate cluster kubeconfig add` writes; the token
    is cached on disk and reused until shortly before it expires. It never prompts: with no
    valid login it says what to run, on stderr, and exits 1.

    Example:

    ```
    kubegate cluster kube-token --cluster prod
    ```
    """
    argv = [*(["--cluster", cluster] if cluster else []), *(["--server", server] if server else [])]
    raise typer.Exit(kube_token.main(argv, os.environ, sys.stdout, sys.stderr))
