"""``kubegate server``: settings, logging, TLS, then uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError
from rich.console import Console

from kubegate import logs
from kubegate.errors import KubegateError
from kubegate.server.app import create_app, uvicorn_options
from kubegate.server.tls import ensure_serving_tls
from kubegate.settings import Settings


def run_server(config: Path | None, overrides: dict[str, Any], console: Console) -> None:
    """Serve until interrupted."""
    try:
        settings = Settings.load(config, **overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise KubegateError(f"invalid settings: {problems}") from None
    logs.configure(settings.log_level)

    def announce(email: str, password: str, generated: bool) -> None:
        # To the terminal only, never to the log.
        if generated:
            console.print(
                f"[bold]kubegate:[/bold] created admin [bold]{email}[/bold] with one-time "
                f"password: [bold]{password}[/bold]\n"
                "          It is shown only now and stored only hashed: keep it."
            )
        else:
            console.print(
                f"[bold]kubegate:[/bold] created admin [bold]{email}[/bold] with the password "
                "from KUBEGATE_BOOTSTRAP_ADMIN_PASSWORD"
            )

    ssl: dict[str, Any] = {}
    scheme = "http"
    if settings.tls:
        tls = ensure_serving_tls(settings)
        ssl = {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)}
        scheme = "https"
    console.print(
        f"[bold]kubegate:[/bold] serving {scheme}://{settings.host}:{settings.port} "
        f"(data dir {settings.data_dir})"
    )
    uvicorn.run(
        create_app(settings, announce),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        **uvicorn_options(),
        **ssl,
    )
