"""The long-running commands and the installer: ``kubegate server``, ``kubegate agent``,
``kubegate cluster install-manifest``.

``server`` is a group too (``kubegate server list|use`` manage the CLI's logins), so running
the server is its callback: ``kubegate server [--host H] [--port P] [--config F]`` with no
subcommand.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kubegate.errors import KubegateError

_err = Console(stderr=True, soft_wrap=True, emoji=False)


def server(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: 8443).")] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML config file (also $KUBEGATE_CONFIG); env vars override it."),
    ] = None,
) -> None:
    """Run the kubegate server: REST API and portal API over HTTPS (with no subcommand).

    On the embedded default it keeps a SQLite database and a self-signed CA in the data dir
    ($KUBEGATE_DATA_DIR, default ~/.local/share/kubegate); set KUBEGATE_DATABASE_URL for
    PostgreSQL. The first start creates an organisation and an admin and prints the admin's
    one-time password (or uses $KUBEGATE_BOOTSTRAP_ADMIN_PASSWORD). Settings:
    docs/configuration.md. `kubegate server list|use` manage the servers this CLI is
    logged in to.

    Example:

    ```
    KUBEGATE_DATABASE_URL=postgresql://kubegate@db/kubegate kubegate server --port 8443
    ```
    """
    if ctx.invoked_subcommand is not None:
        return
    from kubegate.cli.server import run_server

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    try:
        run_server(config, overrides, _err)
    except (KubegateError, FileNotFoundError, ValueError) as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


def agent(
    server_url: Annotated[
        str,
        typer.Option(
            "--server",
            envvar="KUBEGATE_SERVER",
            help="The kubegate server's base URL, e.g. https://kubegate.example.com:8443.",
        ),
    ],
    cluster_token: Annotated[
        str,
        typer.Option(
            envvar="KUBEGATE_CLUSTER_TOKEN",
            help="The cluster's agent credential (kg_agent_…) from `POST /api/v1/clusters`. "
            "Prefer the environment variable: command lines are visible to other users.",
            show_default=False,
        ),
    ],
    ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="KUBEGATE_CA_FILE",
            help="PEM CA the server's certificate must chain to (pinned: the system roots "
            "are then not trusted). The server's self-signed CA is <data dir>/tls/ca.crt.",
        ),
    ] = None,
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            envvar="KUBEGATE_KUBECONFIG",
            help="Kubeconfig to act with; default: the in-cluster service account.",
        ),
    ] = None,
    context: Annotated[
        str | None, typer.Option(help="Context in --kubeconfig (default: its current one).")
    ] = None,
    cluster_name: Annotated[
        str, typer.Option(envvar="KUBEGATE_CLUSTER_NAME", help="Name shown in logs.")
    ] = "",
    user_prefix: Annotated[
        str,
        typer.Option(
            envvar="KUBEGATE_USER_PREFIX",
            help="Prefix of the Kubernetes user name a grant binds: <prefix><email>.",
        ),
    ] = "kubegate:",
    resync_seconds: Annotated[
        float, typer.Option(min=1, help="Full re-check of the cluster's bindings this often.")
    ] = 300.0,
    log_level: Annotated[
        str, typer.Option(envvar="KUBEGATE_LOG_LEVEL", help="debug, info, warning or error.")
    ] = "info",
    metrics_address: Annotated[
        str | None,
        typer.Option(
            envvar="KUBEGATE_METRICS_ADDRESS",
            help="Serve Prometheus metrics at http://HOST:PORT/metrics (plain HTTP, no "
            "authentication: bind it where only Prometheus reaches it). Default: off.",
        ),
    ] = None,
    api_server_url: Annotated[
        str | None,
        typer.Option(
            envvar="KUBEGATE_API_SERVER_URL",
            help="The Kubernetes API URL to report for kubeconfigs that go straight to the "
            "cluster (service-account --direct, the admin kubeconfig), when the one the agent "
            "uses is not reachable from outside. Default: the --kubeconfig's server; in the "
            "cluster, none (set it, or set the address on the kubegate server).",
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            envvar="KUBEGATE_NAMESPACE",
            help="The agent's namespace, where it keeps the admin (break-glass) "
            "kubeconfig's ServiceAccount. Default: its pod's namespace in the cluster, "
            "kube-system outside.",
        ),
    ] = None,
) -> None:
    """Run the kubegate agent: dial out to the server, keep the tunnel open, and turn the
    cluster's grants into RoleBindings and ClusterRoleBindings.

    Runs in the cluster (Deployment from `kubegate cluster install-manifest`) or anywhere
    with --kubeconfig. It only opens outbound connections; logs are JSON lines on stderr.

    Example:

    ```
    kubegate agent --server https://kg.example.com:8443 --kubeconfig ~/.kube/config
    ```
    """
    import uvloop

    from kubegate import logs
    from kubegate.agent.client import TunnelTarget
    from kubegate.agent.runner import AgentOptions, run_agent

    if not cluster_token.startswith("kg_agent_"):
        _err.print("[red]error:[/red] --cluster-token must be a kg_agent_… cluster credential")
        raise typer.Exit(2)
    if ca_file is not None and not ca_file.is_file():
        _err.print(f"[red]error:[/red] --ca-file {ca_file} does not exist")
        raise typer.Exit(2)
    logs.configure(log_level)
    target = TunnelTarget(
        server_url=server_url,
        cluster_token=cluster_token,
        ca_file=str(ca_file) if ca_file else None,
        cluster_name=cluster_name,
    )
    options = AgentOptions(
        target=target,
        kubeconfig=kubeconfig,
        context=context,
        user_prefix=user_prefix,
        resync_seconds=resync_seconds,
        metrics_address=metrics_address,
        api_server_url=api_server_url,
        namespace=namespace,
    )
    signal.signal(signal.SIGTERM, lambda *_: _raise_interrupt())
    try:
        target.tunnel_url  # noqa: B018  (validates the URL before anything starts)
        uvloop.run(run_agent(options))
    except KubegateError as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


def install_manifest_command(
    cluster: Annotated[str, typer.Argument(help="The cluster's name in kubegate.")],
    server_url: Annotated[
        str,
        typer.Option(
            "--server",
            envvar="KUBEGATE_SERVER",
            help="URL the agent dials, as reachable from inside the cluster.",
        ),
    ],
    cluster_token: Annotated[
        str,
        typer.Option(
            envvar="KUBEGATE_CLUSTER_TOKEN",
            help="The cluster's agent credential (kg_agent_…), shown once when the cluster "
            "was registered. It goes into the Secret only.",
            show_default=False,
        ),
    ],
    ca_file: Annotated[
        Path | None,
        typer.Option(
            envvar="KUBEGATE_CA_FILE",
            help="CA of the server's certificate, pinned by the agent (the server's "
            "self-signed CA is <data dir>/tls/ca.crt). Omit when a public CA signed it.",
        ),
    ] = None,
    image: Annotated[str | None, typer.Option(help="Agent container image.")] = None,
    namespace: Annotated[str, typer.Option(help="Namespace the agent runs in.")] = (
        "kubegate-system"
    ),
    user_prefix: Annotated[
        str, typer.Option(help="Prefix of the Kubernetes user name a grant binds.")
    ] = "kubegate:",
) -> None:
    """Print the YAML that installs the agent: Namespace, ServiceAccount, least-privilege
    ClusterRole and its binding, the credential Secret and the Deployment.

    Apply it with `kubegate cluster install-manifest NAME | kubectl apply -f -`. The output
    contains the cluster credential: do not commit it.

    Example:

    ```
    kubegate cluster install-manifest prod --server https://kg.example.com:8443 | kubectl apply -f -
    ```
    """
    from kubegate.agent.manifest import DEFAULT_IMAGE, install_manifest, render_yaml
    from kubegate.domain.access import dns1123_label_problem

    problems = [
        f"cluster name {cluster!r} {problem}"
        for problem in [dns1123_label_problem(cluster)]
        if problem
    ]
    problems += [
        f"--namespace {namespace!r} {problem}"
        for problem in [dns1123_label_problem(namespace)]
        if problem
    ]
    if not cluster_token.startswith("kg_agent_"):
        problems.append("--cluster-token must be a kg_agent_… cluster credential")
    if not server_url.startswith(("https://", "http://")):
        problems.append(f"--server must be an https:// URL, not {server_url!r}")
    ca_pem = None
    if ca_file is not None:
        try:
            ca_pem = ca_file.read_text()
        except OSError as exc:
            problems.append(f"cannot read --ca-file: {exc.strerror or exc}")
        else:
            if "-----BEGIN CERTIFICATE-----" not in ca_pem:
                problems.append(f"--ca-file {ca_file} is not a PEM certificate")
    if problems:
        for problem in problems:
            _err.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(2)
    objects = install_manifest(
        cluster_name=cluster,
        server_url=server_url,
        cluster_token=cluster_token,
        ca_pem=ca_pem,
        image=image or DEFAULT_IMAGE,
        namespace=namespace,
        user_prefix=user_prefix,
    )
    typer.echo(render_yaml(objects), nl=False)


def _raise_interrupt() -> None:
    raise KeyboardInterrupt
