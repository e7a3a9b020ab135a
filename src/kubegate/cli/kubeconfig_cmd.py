"""``kubegate cluster kubeconfig add|remove|list``: kubegate's contexts in your kubeconfig.

``add`` asks the server for what a context needs (the cluster's URL on the proxy, the CA to
trust, your grants) and writes a cluster, a user and a context named ``kubegate-<cluster>``
through ``kubeconfig_edit.py`` (which touches only kubegate's own entries) and
``kubeconfig_file.py`` (kubectl's file rules: ``--kubeconfig``, else the first file of
``$KUBECONFIG``, else ``~/.kube/config``; ``<file>.lock``; an atomic write and one backup).
The user runs the exec credential plugin (``kubegate cluster kube-token``) unless
``--embed-token`` asks for a short-lived token in the file. ``remove`` and ``list`` read the
file only (``list`` also asks the server which clusters still exist, when it can).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kubegate.cli.api import ApiClient, ApiError
from kubegate.cli.application import Application, application
from kubegate.cli.clusters import ClusterOption, all_clusters
from kubegate.cli.config_store import Login
from kubegate.cli.login import OutputOption, ago_until
from kubegate.cli.output import Column, Format, ago
from kubegate.domain.access import NO_ACCESS

if TYPE_CHECKING:
    from kubegate.cli.kubeconfig_edit import Document, ManagedEntry, RemoveResult

# kubeconfig_edit and kubeconfig_file (ruamel.yaml) are imported by the commands that use
# them, so that every other command starts without ruamel.

KubeconfigOption = Annotated[
    Path | None,
    typer.Option(
        "--kubeconfig",
        help="The kubeconfig file (default: the first file of $KUBECONFIG, else ~/.kube/config).",
        show_default=False,
    ),
]
AllOption = Annotated[bool, typer.Option("--all", help="Every cluster you have a grant on.")]


def default_exec_command() -> tuple[str, tuple[str, ...]]:
    """The running kubegate as kubectl should run it: the console script's absolute path,
    or ``python -m kubegate`` when that is how kubegate was started."""
    script = Path(sys.argv[0]).resolve()
    if script.name in ("__main__.py", "-m") or not script.is_file():
        return sys.executable, ("-m", "kubegate")
    return str(script), ()


def target_clusters(
    app: Application, api: ApiClient, login: Login, cluster: str | None, every: bool
) -> list[dict[str, Any]]:
    """The clusters ``--cluster`` / ``--all`` name, each with the caller's grants."""
    if every:
        if cluster is not None:
            app.output.fail("pass --cluster or --all, not both")
        found = [c for c in all_clusters(api) if c.get("my_access")]
        if not found:
            app.output.fail(f"you hold no grant on any cluster of {login.server}")
        return found
    chosen = app.cluster(api, login, cluster)
    if not chosen.get("my_access"):
        app.output.fail(f"{NO_ACCESS} ({chosen['name']}); ask an admin for a grant")
    return [chosen]


def default_namespace(app: Application, cluster: dict[str, Any]) -> str | None:
    """The namespace a context should default to when ``--namespace`` is not given: the one
    namespace of namespace-scoped grants (said aloud), else none."""
    grants = cluster.get("my_access") or []
    if any(not g.get("namespace") for g in grants):
        return None
    namespaces: list[str] = sorted({str(g["namespace"]) for g in grants})
    if len(namespaces) == 1:
        app.output.note(
            f"Your grant on {cluster['name']} is for namespace {namespaces[0]}: "
            "the context defaults to it."
        )
        return namespaces[0]
    app.output.note(
        f"Your grants on {cluster['name']} are for namespaces {', '.join(namespaces)}: "
        "the context defaults to none; pass --namespace to choose one."
    )
    return None


def add(
    ctx: typer.Context,
    cluster: ClusterOption = None,
    every: AllOption = False,
    use: Annotated[
        bool, typer.Option("--use", help="Make the context current (single cluster only).")
    ] = False,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", "-n", help="The context's default namespace.", show_default=False
        ),
    ] = None,
    print_only: Annotated[
        bool,
        typer.Option("--print", help="Print a standalone kubeconfig; leave the file untouched."),
    ] = False,
    embed_token: Annotated[
        bool,
        typer.Option("--embed-token", help="Embed a short-lived token instead of the exec plugin."),
    ] = False,
    exec_command: Annotated[
        str | None,
        typer.Option(
            help="What kubectl runs for credentials (default: this kubegate's absolute path).",
            show_default=False,
        ),
    ] = None,
    kubeconfig: KubeconfigOption = None,
    insecure_skip_tls_verify: Annotated[
        bool,
        typer.Option(
            "--insecure-skip-tls-verify", help="kubectl skips TLS verification (development)."
        ),
    ] = False,
) -> None:
    """Add (or update) a kubegate context for a cluster in your kubeconfig.

    Only kubegate's own entries (named kubegate-CLUSTER) are touched; current-context
    changes only with --use.

    Examples:

    ```
    kubegate cluster kubeconfig add --cluster prod --use
    kubegate cluster kubeconfig add --all
    kubegate cluster kubeconfig add --cluster prod --embed-token --print > prod.kubeconfig
    ```
    """
    from kubegate.cli import kubeconfig_edit, kubeconfig_file

    app = application(ctx)
    if use and every:
        app.output.fail("--use takes a single cluster, not --all")
    login = app.login()
    with app.api(login) as api:
        clusters = target_clusters(app, api, login, cluster, every)
        info = api.get("/api/v1/info")
        entries = [
            entry_for(
                app,
                api,
                login,
                one,
                info,
                namespace,
                embed_token,
                exec_command,
                insecure_skip_tls_verify,
            )
            for one in clusters
        ]
    if print_only:
        if len(entries) == 1:
            app.output.raw(kubeconfig_edit.standalone(entries[0]))
            return
        doc = kubeconfig_edit.load("", "<stdout>")
        for entry in entries:
            kubeconfig_edit.add(doc, entry, use=False)
        app.output.raw(kubeconfig_edit.dump(doc))
        return
    path = kubeconfig_file.target_path(kubeconfig, app.environ, Path.home())
    results = kubeconfig_file.edit(
        path, lambda doc: [kubeconfig_edit.add(doc, e, use=use) for e in entries]
    )
    for result, entry in zip(results, entries, strict=True):
        verb = "Updated" if result.replaced else "Added"
        current = " and made it current" if use else ""
        app.output.say(f"{verb} context {result.name} in {path}{current}.")
        if isinstance(entry.auth, kubeconfig_edit.TokenAuth):
            app.output.note(
                f"Its embedded token expires {ago_until(entry.auth.expires_at)}; run this "
                "again for a new one."
            )
    if len(results) == 1 and not use:
        app.output.note(f"Use it: kubectl --context {results[0].name} get pods")


def entry_for(
    app: Application,
    api: ApiClient,
    login: Login,
    cluster: dict[str, Any],
    info: dict[str, Any],
    namespace: str | None,
    embed_token: bool,
    exec_command: str | None,
    insecure: bool,
) -> ManagedEntry:
    """What the kubeconfig gets for one cluster."""
    from kubegate.cli.kubeconfig_edit import ExecAuth, ManagedEntry, TokenAuth

    if not cluster.get("server"):
        app.output.fail(f"the access gateway is disabled on {login.server}")
    auth: ExecAuth | TokenAuth
    if embed_token:
        minted = api.post(f"/api/v1/clusters/{cluster['id']}/k8s-token", {})
        auth = TokenAuth(minted["token"], dt.datetime.fromisoformat(minted["expires_at"]))
    else:
        command, prefix = (exec_command, ()) if exec_command else default_exec_command()
        args = (
            *prefix,
            "cluster",
            "kube-token",
            "--server",
            login.server,
            "--cluster",
            str(cluster["id"]),
        )
        auth = ExecAuth(
            command,
            args,
            f"kubectl runs kubegate for this context's credentials: install it "
            f"(pip install kubegate) and run: kubegate login {login.server}",
        )
    ca = info.get("ca_pem")
    return ManagedEntry(
        cluster_name=str(cluster["name"]),
        cluster_id=str(cluster["id"]),
        kubegate_server=login.server,
        proxy_server=str(cluster["server"]),
        ca_pem=ca.encode() if ca else None,
        insecure_skip_tls_verify=insecure,
        namespace=namespace if namespace is not None else default_namespace(app, cluster),
        auth=auth,
    )


def remove(
    ctx: typer.Context,
    cluster: ClusterOption = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every kubegate context in the file.")
    ] = False,
    kubeconfig: KubeconfigOption = None,
) -> None:
    """Remove kubegate contexts (and their cluster and user entries) from your kubeconfig.

    Works offline: the file says which contexts are kubegate's.

    Examples:

    ```
    kubegate cluster kubeconfig remove --cluster prod
    kubegate cluster kubeconfig remove --all
    ```
    """
    from kubegate.cli import kubeconfig_edit, kubeconfig_file

    app = application(ctx)
    path = kubeconfig_file.target_path(kubeconfig, app.environ, Path.home())
    if every and cluster is not None:
        app.output.fail("pass --cluster or --all, not both")
    if not every and cluster is None:
        login = app.config().login(None)
        if login is None or login.cluster is None:
            app.output.fail("name what to remove: --cluster NAME|ID or --all")
        cluster = login.cluster.name

    def change(doc: Document) -> list[RemoveResult]:
        found = kubeconfig_edit.managed(doc)
        names = [
            m.cluster_name
            for m in found
            if every or cluster in (m.cluster_name, m.cluster_id, m.name)
        ]
        if not names:
            what = "no kubegate contexts" if every else f"no kubegate context for {cluster!r}"
            app.output.fail(f"{path} has {what}; see: kubegate cluster kubeconfig list")
        return [kubeconfig_edit.remove(doc, name) for name in names]

    for result in kubeconfig_file.edit(path, change):
        app.output.say(f"Removed context {result.name} from {path}.")
        if result.was_current:
            now = result.current_context or "none"
            app.output.note(f"It was the current context; the current context is now {now}.")


def list_contexts(
    ctx: typer.Context, kubeconfig: KubeconfigOption = None, output: OutputOption = Format.table
) -> None:
    """List the kubegate contexts in your kubeconfig, and whether their cluster still exists.

    Example:

    ```
    kubegate cluster kubeconfig list
    ```
    """
    from kubegate.cli import kubeconfig_edit, kubeconfig_file

    app = application(ctx)
    path = kubeconfig_file.target_path(kubeconfig, app.environ, Path.home())
    found = kubeconfig_edit.managed(kubeconfig_file.read(path))
    existing = known_clusters(app, {m.kubegate_server for m in found})
    rows = [
        {
            "current": m.current,
            "name": m.name,
            "cluster": m.cluster_name,
            "cluster_id": m.cluster_id,
            "kubegate_server": m.kubegate_server,
            "server": m.proxy_server,
            "namespace": m.namespace,
            "auth": m.auth,
            "token_expires_at": m.token_expires_at.isoformat() if m.token_expires_at else None,
            "cluster_exists": (
                m.cluster_id in existing[m.kubegate_server]
                if m.kubegate_server in existing
                else None
            ),
        }
        for m in found
    ]
    columns = [
        Column("", "current", lambda v: "*" if v else ""),
        Column("context", "name"),
        Column("cluster", "cluster"),
        Column("namespace", "namespace", lambda v: v or "-"),
        Column("auth", "auth", lambda v: v or "missing"),
        Column("token expires", "token_expires_at", lambda v: ago(v) if v else "-"),
        Column("exists", "cluster_exists", lambda v: {True: "yes", False: "no (gone)"}.get(v, "?")),
    ]
    app.output.listing(
        rows,
        columns,
        output,
        empty=f"No kubegate contexts in {path}; add one: "
        "kubegate cluster kubeconfig add --cluster NAME",
    )


def known_clusters(app: Application, servers: set[str]) -> dict[str, set[str]]:
    """For each kubegate server you are logged in to, the ids of its clusters; a server
    without a login or that cannot be asked is left out (its contexts show as unknown)."""
    config = app.config()
    known: dict[str, set[str]] = {}
    for server in servers:
        login = config.login(server)
        if login is None:
            continue
        try:
            with app.api(login) as api:
                known[server] = {str(c["id"]) for c in all_clusters(api)}
        except ApiError:
            continue
    return known
