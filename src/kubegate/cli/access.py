"""``kubegate cluster access list|grant|revoke``: who may use a cluster (admins manage it).

A grant becomes RBAC on the cluster through its agent; ``grant`` waits (with a spinner on
stderr) until the agent reports it ``applied`` or ``failed``, so a script that granted
access can use it on the next line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from kubegate.cli.api import ApiClient
from kubegate.cli.application import Application, application
from kubegate.cli.clusters import ClusterOption
from kubegate.cli.login import OutputOption
from kubegate.cli.output import Column, Format, ago
from kubegate.domain.access import Role

POLL_SECONDS = 0.5


def grants(api: ApiClient, cluster_id: str) -> Iterator[dict[str, Any]]:
    """Every grant on the cluster the caller may see, following the cursor."""
    cursor: str | None = None
    while True:
        page = api.get(
            f"/api/v1/clusters/{cluster_id}/access/grants",
            params={"cursor": cursor} if cursor else None,
        )
        yield from page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return


def scope_text(grant: dict[str, Any]) -> str:
    return f"namespace {grant['namespace']}" if grant.get("namespace") else "cluster"


def access_list(
    ctx: typer.Context, cluster: ClusterOption = None, output: OutputOption = Format.table
) -> None:
    """List the grants on a cluster and where each is on its way into the cluster's RBAC.

    Admins see every grant; members see their own.

    Examples:

    ```
    kubegate cluster access list --cluster prod
    kubegate cluster access list -o json
    ```
    """
    app = application(ctx)
    login = app.login()
    with app.api(login) as api:
        target = app.cluster(api, login, cluster)
        rows = list(grants(api, target["id"]))
    columns = [
        Column("id", "id"),
        Column("user", "user_email"),
        Column("role", "role"),
        Column("scope", "namespace", lambda v: f"namespace {v}" if v else "cluster"),
        Column("status", "status"),
        Column("detail", "status_detail", lambda v: v or ""),
        Column("age", "created_at", lambda v: ago(v).removesuffix(" ago")),
    ]
    app.output.listing(
        rows,
        columns,
        output,
        empty=f"No grants on {target['name']}; grant one: "
        f"kubegate cluster access grant EMAIL --cluster {target['name']}",
    )


def access_grant(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The member's email.")],
    role: Annotated[Role, typer.Option(help="The Kubernetes role granted.")] = Role.VIEW,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", "-n", help="Grant it in this namespace only (default: cluster-wide)."
        ),
    ] = None,
    cluster: ClusterOption = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until the agent applied the grant on the cluster.")
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for it.", min=1)] = 120.0,
    output: OutputOption = Format.table,
) -> None:
    """Grant a member a role on a cluster, or in one namespace of it (admins).

    Granting what the member already holds says so and succeeds.

    Examples:

    ```
    kubegate cluster access grant ada@example.com --cluster prod
    kubegate cluster access grant bob@example.com --role edit --namespace dev
    kubegate cluster access grant ci@example.com --role admin --no-wait
    ```
    """
    app = application(ctx)
    login = app.login()
    with app.api(login) as api:
        target = app.cluster(api, login, cluster)
        body: dict[str, Any] = {"email": email, "role": role.value}
        if namespace is not None:
            body["namespace"] = namespace
        status, grant = api.send(
            "POST", f"/api/v1/clusters/{target['id']}/access/grants", body=body
        )
        what = f"{grant['role']} on {scope_text(grant)} of {target['name']} to {email}"
        if wait and grant["status"] != "applied":
            grant = wait_applied(app, api, target, grant, timeout)
    if output is not Format.table:
        app.output.document(grant, output)
        return
    shown = "" if grant["status"] == "applied" else f", {grant['status']}"
    if status == 200:
        app.output.say(f"Already granted: {what} (grant {grant['id']}{shown}); nothing changed.")
    else:
        app.output.say(f"Granted: {what} (grant {grant['id']}{shown}).")


def wait_applied(
    app: Application, api: ApiClient, target: dict[str, Any], grant: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Poll the grant until it is ``applied``; end the command when it failed, the cluster
    is offline, it was deleted, or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    with app.output.err.status(f"Waiting for the agent of {target['name']} to apply it…"):
        while grant["status"] != "applied":
            if grant["status"] == "failed":
                app.output.fail(f"the grant failed on {target['name']}: {grant['status_detail']}")
            if grant["status"] == "cluster_offline":
                app.output.fail(
                    f"not applied yet: {target['name']} is offline; the grant applies when "
                    "its agent reconnects (see: kubegate cluster access list)"
                )
            if time.monotonic() > deadline:
                app.output.fail(
                    f"still {grant['status']} after {timeout:.0f} s; see: kubegate cluster "
                    f"access list --cluster {target['name']}"
                )
            time.sleep(POLL_SECONDS)
            grant = current_grant(app, api, target["id"], grant["id"])
    return grant


def current_grant(
    app: Application, api: ApiClient, cluster_id: str, grant_id: str
) -> dict[str, Any]:
    for grant in grants(api, cluster_id):
        if grant["id"] == grant_id:
            return grant
    app.output.fail("the grant was deleted while waiting for it")


def access_revoke(
    ctx: typer.Context,
    target: Annotated[
        str | None,
        typer.Argument(
            help="A member's email (every grant they hold on the cluster) or a grant id.",
            show_default=False,
        ),
    ] = None,
    all_grants: Annotated[
        bool,
        typer.Option(
            "--all", help="Revoke every grant and invalidate every token for the cluster."
        ),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    cluster: ClusterOption = None,
) -> None:
    """Revoke access to a cluster (admins): one grant, all of a member's, or everyone's.

    Tokens already minted stop working at once.

    Examples:

    ```
    kubegate cluster access revoke ada@example.com --cluster prod
    kubegate cluster access revoke 3f2c...e9 --cluster prod
    kubegate cluster access revoke --all --cluster prod --yes
    ```
    """
    app = application(ctx)
    if (target is None) == (not all_grants):
        app.output.fail("name what to revoke: an EMAIL, a GRANT_ID, or --all")
    login = app.login()
    with app.api(login) as api:
        chosen = app.cluster(api, login, cluster)
        base = f"/api/v1/clusters/{chosen['id']}/access"
        if all_grants:
            confirm_revoke_all(app, chosen["name"], yes)
            result = api.post(f"{base}/revoke-all")
            app.output.say(
                f"Revoked {result['grants_removed']} grant(s) on {chosen['name']}; "
                "every kube token for it is now void."
            )
        elif target is not None and "@" in target:
            revoked = api.post(f"{base}/revoke", {"email": target})["revoked"]
            if revoked:
                app.output.say(f"Revoked {len(revoked)} grant(s) of {target} on {chosen['name']}.")
            else:
                app.output.say(f"{target} holds no grant on {chosen['name']}; nothing to revoke.")
        elif target is not None:
            api.delete(f"{base}/grants/{target}")
            app.output.say(f"Revoked grant {target} on {chosen['name']}.")


def confirm_revoke_all(app: Application, cluster_name: str, yes: bool) -> None:
    """Ask for the cluster's name before revoking everything, unless ``--yes``."""
    if yes:
        return
    if not sys.stdin.isatty():
        app.output.fail("revoke --all asks for confirmation; pass --yes when not in a terminal")
    typed = typer.prompt(
        f"This revokes every grant on {cluster_name} and voids every token for it.\n"
        "Type the cluster's name to confirm",
        err=True,
    )
    if typed.strip() != cluster_name:
        app.output.fail("not confirmed; nothing was revoked")
