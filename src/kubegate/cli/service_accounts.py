"""``kubegate cluster serviceaccount create|list|delete|kubeconfig`` and ``kubegate cluster
admin-kubeconfig``: credentials for automation, and the way in when kubegate is down.

A service account is a real Kubernetes ServiceAccount that kubegate's agent creates, binds to
one role and keeps as it should be; ``create`` waits (a spinner on stderr) until the agent
reports it ``applied``. Its kubeconfig goes through kubegate's proxy (revocable at once) or,
with ``--direct``, straight to the apiserver with a bound token. Kubeconfigs are written to
stdout (``> ci.kubeconfig``) or, with ``--file``, to a new file only you can read; what they
are and when they expire goes to stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from kubegate.cli.access_keys import parse_duration
from kubegate.cli.api import ApiClient
from kubegate.cli.application import Application, application
from kubegate.cli.clusters import ClusterOption
from kubegate.cli.kubeconfig_file import write_private_file
from kubegate.cli.login import OutputOption
from kubegate.cli.output import Column, Format, ago
from kubegate.domain.access import Role

POLL_SECONDS = 0.5
EXPIRES_HEADER = "kubegate-token-expires-at"

NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="The ServiceAccount's namespace (needed only when two share the name).",
        show_default=False,
    ),
]
FileOption = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="Write the kubeconfig to this new file (mode 0600) instead of stdout.",
        show_default=False,
        dir_okay=False,
    ),
]


def accounts(api: ApiClient, cluster_id: str) -> Iterator[dict[str, Any]]:
    """Every managed service account on the cluster."""
    return api.pages(f"/api/v1/clusters/{cluster_id}/service-accounts")


def find_account(
    app: Application, api: ApiClient, target: dict[str, Any], name: str, namespace: str | None
) -> dict[str, Any]:
    """The account called ``name`` (in ``namespace``, when given), or end saying why not."""
    found = [
        a
        for a in accounts(api, target["id"])
        if a["name"] == name and namespace in (None, a["namespace"])
    ]
    where = f" in namespace {namespace}" if namespace else ""
    if not found:
        app.output.fail(
            f"no service account {name}{where} on {target['name']}; see: kubegate cluster "
            f"serviceaccount list --cluster {target['name']}"
        )
    if len(found) > 1:
        spaces = ", ".join(sorted(a["namespace"] for a in found))
        app.output.fail(f"{name} exists in namespaces {spaces}; pass --namespace")
    return found[0]


def serviceaccount_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The ServiceAccount's name (a DNS-1123 label).")],
    namespace: Annotated[
        str,
        typer.Option("--namespace", "-n", help="The namespace it lives in (must exist)."),
    ],
    role: Annotated[Role, typer.Option(help="The Kubernetes role it is bound to.")] = Role.VIEW,
    scope: Annotated[
        str,
        typer.Option(
            help="namespace: a RoleBinding in its namespace; cluster: a ClusterRoleBinding."
        ),
    ] = "namespace",
    cluster: ClusterOption = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until the agent created it on the cluster.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for it.", min=1)] = 120.0,
    output: OutputOption = Format.table,
) -> None:
    """Create a ServiceAccount on a cluster and bind it to a role, for automation (admins).

    kubegate's agent creates the ServiceAccount and its binding, and puts them back if
    someone changes or deletes them. Get a kubeconfig for it with `kubegate cluster
    serviceaccount kubeconfig`.

    Examples:

    ```
    kubegate cluster serviceaccount create ci-deployer --namespace ci --role edit
    kubegate cluster serviceaccount create auditor -n ops --role view --scope cluster -c prod
    ```
    """
    app = application(ctx)
    if scope not in ("namespace", "cluster"):
        raise typer.BadParameter(f"{scope!r}: use namespace or cluster", param_hint="--scope")
    login = app.login()
    with app.api(login) as api:
        target = app.cluster(api, login, cluster)
        body = {"name": name, "namespace": namespace, "role": role.value, "scope": scope}
        account = api.post(f"/api/v1/clusters/{target['id']}/service-accounts", body)
        if wait and account["status"] != "applied":
            account = wait_applied(app, api, target, account, timeout)
    if output is not Format.table:
        app.output.document(account, output)
        return
    where = "the whole cluster" if scope == "cluster" else f"namespace {namespace}"
    shown = "" if account["status"] == "applied" else f", {account['status']}"
    app.output.say(
        f"Created service account {namespace}/{name} on {target['name']}: {role.value} on "
        f"{where} ({account['username']}{shown})."
    )


def wait_applied(
    app: Application,
    api: ApiClient,
    target: dict[str, Any],
    account: dict[str, Any],
    timeout: float,
) -> dict[str, Any]:
    """Poll the account until it is ``applied``; end the command when it failed, the
    cluster is offline, it was deleted, or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    with app.output.err.status(f"Waiting for the agent of {target['name']} to create it…"):
        while account["status"] != "applied":
            if account["status"] == "failed":
                app.output.fail(
                    f"creating it failed on {target['name']}: {account['status_detail']}"
                )
            if account["status"] == "cluster_offline":
                app.output.fail(
                    f"not created yet: {target['name']} is offline; it is created when its "
                    "agent reconnects (see: kubegate cluster serviceaccount list)"
                )
            if time.monotonic() > deadline:
                app.output.fail(f"still {account['status']} after {timeout:.0f} s")
            time.sleep(POLL_SECONDS)
            current = [a for a in accounts(api, target["id"]) if a["id"] == account["id"]]
            if not current:
                app.output.fail("the service account was deleted while waiting for it")
            account = current[0]
    return account


def serviceaccount_list(
    ctx: typer.Context, cluster: ClusterOption = None, output: OutputOption = Format.table
) -> None:
    """List the service accounts kubegate manages on a cluster, with their status (admins).

    Examples:

    ```
    kubegate cluster serviceaccount list --cluster prod
    kubegate cluster serviceaccount list -o json
    ```
    """
    app = application(ctx)
    login = app.login()
    with app.api(login) as api:
        target = app.cluster(api, login, cluster)
        rows = list(accounts(api, target["id"]))
    columns = [
        Column("name", "name"),
        Column("namespace", "namespace"),
        Column("role", "role"),
        Column("scope", "scope"),
        Column("status", "status"),
        Column("detail", "status_detail", lambda v: v or ""),
        Column("age", "created_at", lambda v: ago(v).removesuffix(" ago")),
    ]
    app.output.listing(
        rows,
        columns,
        output,
        empty=f"No service accounts on {target['name']}; create one: kubegate cluster "
        f"serviceaccount create NAME --namespace NS --role edit --cluster {target['name']}",
    )


def serviceaccount_delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The service account's name.")],
    namespace: NamespaceOption = None,
    cluster: ClusterOption = None,
) -> None:
    """Delete a service account (admins): its binding and the ServiceAccount go.

    Its kubeconfigs through kubegate stop working at once; direct ones stop when the agent
    has deleted the ServiceAccount (bound tokens die with it).

    Example:

    ```
    kubegate cluster serviceaccount delete ci-deployer --cluster prod
    ```
    """
    app = application(ctx)
    login = app.login()
    with app.api(login) as api:
        target = app.cluster(api, login, cluster)
        account = find_account(app, api, target, name, namespace)
        api.delete(f"/api/v1/clusters/{target['id']}/service-accounts/{account['id']}")
    app.output.say(
        f"Deleted service account {account['namespace']}/{name} on {target['name']}; its "
        "kubeconfigs through kubegate no longer work."
    )


def serviceaccount_kubeconfig(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The service account's name.")],
    namespace: NamespaceOption = None,
    duration: Annotated[
        str, typer.Option(help="How long its token lives: 90m, 24h, 7d (server caps it).")
    ] = "24h",
    direct: Annotated[
        bool,
        typer.Option(
            "--direct",
            help="Straight to the cluster's apiserver with a bound token (works while "
            "kubegate is down) instead of through kubegate's proxy.",
        ),
    ] = False,
    file: FileOption = None,
    cluster: ClusterOption = None,
) -> None:
    """Print a ready kubeconfig that acts as a service account (admins), for CI.

    Through kubegate by default: deleting the service account, or revoke --all, ends it at
    once. With --direct it talks to the apiserver itself and lives until it expires or the
    ServiceAccount is deleted.

    Examples:

    ```
    kubegate cluster serviceaccount kubeconfig ci-deployer --duration 24h > ci.kubeconfig
    kubegate cluster serviceaccount kubeconfig ci-deployer --direct -f ci-direct.kubeconfig
    ```
    """
    app = application(ctx)
    seconds = int(parse_duration(duration).total_seconds())
    login = app.login()
    with app.api(login) as api:
        target = app.cluster(api, login, cluster)
        account = find_account(app, api, target, name, namespace)
        path = f"/api/v1/clusters/{target['id']}/service-accounts/{account['id']}/kubeconfig"
        text, headers = api.text("POST", path, body={"duration_seconds": seconds, "direct": direct})
    how = "straight to its apiserver" if direct else "through kubegate"
    _deliver(
        app,
        text,
        file,
        f"kubeconfig for {account['namespace']}/{name} on {target['name']}, {how}; its token "
        f"expires at {headers.get(EXPIRES_HEADER, '?')}.",
    )


def admin_kubeconfig(
    ctx: typer.Context,
    duration: Annotated[
        str, typer.Option(help="How long its token lives: 30m, 1h (server caps it).")
    ] = "1h",
    file: FileOption = None,
    cluster: ClusterOption = None,
    issued: Annotated[
        bool, typer.Option("--issued", help="List who took admin kubeconfigs instead.")
    ] = False,
    output: OutputOption = Format.table,
) -> None:
    """The break-glass kubeconfig: cluster-admin straight to the apiserver, for when
    kubegate or its tunnel is down.

    Only for organisation admins who hold cluster-admin on the whole cluster. It bypasses
    kubegate's proxy, its limits and its per-request audit; every issuance is recorded in
    the audit log (cluster.admin_kubeconfig) and listed by --issued. Take it while the
    agent is connected: the agent mints its short-lived bound token.

    Examples:

    ```
    kubegate cluster admin-kubeconfig --cluster prod -f prod-admin.kubeconfig
    kubegate cluster admin-kubeconfig --cluster prod --issued
    ```
    """
    app = application(ctx)
    login = app.login()
    with app.api(login) as api:
        target = app.cluster(api, login, cluster)
        base = f"/api/v1/clusters/{target['id']}"
        if issued:
            rows = list(api.pages(f"{base}/admin-kubeconfigs"))
        else:
            seconds = int(parse_duration(duration).total_seconds())
            text, headers = api.text(
                "POST", f"{base}/admin-kubeconfig", body={"duration_seconds": seconds}
            )
    if issued:
        columns = [
            Column("when", "issued_at", ago),
            Column("who", "actor_email"),
            Column("result", "result"),
            Column("expires", "expires_at", lambda v: v or ""),
            Column("detail", "detail"),
        ]
        app.output.listing(
            rows, columns, output, empty=f"No admin kubeconfig was ever taken for {target['name']}."
        )
        return
    _deliver(
        app,
        text,
        file,
        f"ADMIN kubeconfig for {target['name']}: cluster-admin, straight to its apiserver, "
        f"bypassing kubegate; it expires at {headers.get(EXPIRES_HEADER, '?')}. This issuance "
        "is in the audit log (cluster.admin_kubeconfig).",
    )


def _deliver(app: Application, text: str, file: Path | None, what: str) -> None:
    """The kubeconfig to ``file`` (new, 0600) or stdout; what it is to stderr."""
    if file is None:
        if sys.stdout.isatty():
            app.output.note("Printing a credential; redirect it to a file (or use --file).")
        app.output.raw(text)
        app.output.note(f"Wrote a {what}")
        return
    if file.exists():
        app.output.fail(f"{file} exists; choose a new file (nothing was written)")
    write_private_file(file, text)
    app.output.note(f"Wrote a {what}")
    app.output.say(str(file))
