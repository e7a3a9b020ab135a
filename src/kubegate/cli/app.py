"""The ``kubegate`` command line: the Typer app and its command groups.

One module per command group (``login.py``, ``clusters.py``, ``access.py``,
``access_keys.py``, ``audit.py``, ``kubeconfig_cmd.py``, ``doctor.py``, ``run.py``), sharing an
:class:`Application` for output and logins. :func:`main` is where every expected failure
becomes one line on stderr and a non-zero exit: no traceback reaches a user
(``KUBEGATE_DEBUG=1`` shows one).
"""

from __future__ import annotations

import os
import sys

import typer

from kubegate import __version__
from kubegate.cli import (
    access,
    access_keys,
    audit,
    audit_export,
    clusters,
    doctor,
    kubeconfig_cmd,
    login,
    run,
    service_accounts,
)
from kubegate.cli.api import ApiError
from kubegate.cli.application import Application
from kubegate.cli.config_store import StoreError
from kubegate.errors import KubegateError


def _group(name: str, help: str) -> typer.Typer:
    return typer.Typer(name=name, help=help, no_args_is_help=True)


app = typer.Typer(
    name="kubegate",
    help="kubegate: scoped, short-lived kubectl access to your Kubernetes clusters.\n\n"
    "Start with: kubegate login SERVER, then kubegate cluster kubeconfig add --use.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def _root(ctx: typer.Context) -> None:
    ctx.obj = Application()


@app.command()
def version() -> None:
    """Print kubegate's version.

    Example:

    ```
    kubegate version
    ```
    """
    typer.echo(__version__)


app.command()(login.login)
app.command()(login.logout)
app.command()(login.whoami)
app.command()(run.agent)
app.command()(doctor.doctor)

server_app = typer.Typer(name="server", invoke_without_command=True)  # help: run.server's
server_app.callback()(run.server)
server_app.command("list")(login.server_list)
server_app.command("use")(login.server_use)
app.add_typer(server_app)

cluster_app = _group("cluster", "Your clusters, their access grants and kubeconfig contexts.")
cluster_app.command("list")(clusters.cluster_list)
cluster_app.command("select")(clusters.cluster_select)
cluster_app.command("kube-token")(clusters.cluster_kube_token)
cluster_app.command("install-manifest")(run.install_manifest_command)
cluster_app.command("admin-kubeconfig")(service_accounts.admin_kubeconfig)
app.add_typer(cluster_app)

serviceaccount_app = _group(
    "serviceaccount", "Kubernetes ServiceAccounts for automation and their kubeconfigs (admins)."
)
serviceaccount_app.command("create")(service_accounts.serviceaccount_create)
serviceaccount_app.command("list")(service_accounts.serviceaccount_list)
serviceaccount_app.command("delete")(service_accounts.serviceaccount_delete)
serviceaccount_app.command("kubeconfig")(service_accounts.serviceaccount_kubeconfig)
cluster_app.add_typer(serviceaccount_app)

access_app = _group("access", "Who may use a cluster: list, grant and revoke (admins).")
access_app.command("list")(access.access_list)
access_app.command("grant")(access.access_grant)
access_app.command("revoke")(access.access_revoke)
cluster_app.add_typer(access_app)

kubeconfig_app = _group("kubeconfig", "kubegate's contexts in your kubeconfig: add, remove, list.")
kubeconfig_app.command("add")(kubeconfig_cmd.add)
kubeconfig_app.command("remove")(kubeconfig_cmd.remove)
kubeconfig_app.command("list")(kubeconfig_cmd.list_contexts)
cluster_app.add_typer(kubeconfig_app)

audit_app = typer.Typer(name="audit", invoke_without_command=True)  # help: audit_log's
audit_app.callback()(audit.audit_log)
audit_app.command("export")(audit_export.audit_export)
app.add_typer(audit_app)

key_app = _group(
    "access-key", "Access keys for automation, within your access: create, list, delete."
)
key_app.command("create")(access_keys.access_key_create)
key_app.command("list")(access_keys.access_key_list)
key_app.command("delete")(access_keys.access_key_delete)
app.add_typer(key_app)


def main() -> None:
    """Run the CLI; expected failures end as ``error: <reason>`` and exit status 1.

    Typer's standalone mode handles usage errors (status 2), ``typer.Exit`` and Ctrl-C.
    """
    try:
        app()
    except (ApiError, StoreError, KubegateError) as exc:
        _fail(str(exc))
    except Exception as exc:  # the last line of defence: no traceback for users
        if os.environ.get("KUBEGATE_DEBUG"):
            raise
        _fail(f"unexpected {type(exc).__name__}: {exc} (KUBEGATE_DEBUG=1 shows the traceback)")


def _fail(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, soft_wrap=True, highlight=False, emoji=False).print(
        f"[red]error:[/red] {escape(message)}", markup=True
    )
    sys.exit(1)
