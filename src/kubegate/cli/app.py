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
_err = Console(stderr=True)


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


def main() -> None:
    """Console-script entry point."""
    app()
