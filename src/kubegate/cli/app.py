"""The ``kubegate`` command line."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kubegate import __version__
from kubegate.errors import KubegateError

app = typer.Typer(
    name="kubegate",
    help="kubegate: scoped, short-lived kubectl access to your Kubernetes clusters.",
    no_args_is_help=True,
    add_completion=False,
)
_err = Console(stderr=True, soft_wrap=True)


@app.command()
def version() -> None:
    """Print kubegate's version."""
    typer.echo(__version__)


@app.command()
def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(help="Keep the demo's files here instead of a temp dir removed on exit."),
    ] = None,
) -> None:
    """Run kubegate's demo on this machine, until Ctrl-C.

    Builds the local test environment if it is not cached yet (the first time takes about
    10 minutes on 2 cores), starts a real Kubernetes control plane on 127.0.0.1 with a fake
    (kwok) node and a demo pod, and prints a kubeconfig and ready kubectl commands for it.
    """
    from kubegate.cli.demo import run_demo

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_demo(stop, workdir, Console(soft_wrap=True))
    except KubegateError as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc


@app.command()
def server(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8443].")] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="TOML config file (also $KUBEGATE_CONFIG); env vars override it."),
    ] = None,
) -> None:
    """Run the kubegate server: REST API and portal API over HTTPS.

    On the embedded default it keeps a SQLite database and a self-signed CA in the data dir
    ($KUBEGATE_DATA_DIR, default ~/.local/share/kubegate); set KUBEGATE_DATABASE_URL for
    PostgreSQL. The first start creates an organisation and an admin and prints the admin's
    one-time password (or uses $KUBEGATE_BOOTSTRAP_ADMIN_PASSWORD). Settings:
    docs/configuration.md.
    """
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


def main() -> None:
    """Console-script entry point."""
    app()
