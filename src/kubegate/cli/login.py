"""``kubegate login``, ``logout``, ``whoami`` and ``server list|use``: the CLI's logins.

A login is made once per server and kept in the config file (``config_store.py``), with
the TLS trust decided at login (``trust.py``).
"""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from kubegate.cli import config_store, env_login, kube_token_mint
from kubegate.cli.api import ApiClient, ApiError
from kubegate.cli.application import Application, application
from kubegate.cli.config_store import Credential, Login
from kubegate.cli.output import OUTPUT_HELP, Column, Format, ago
from kubegate.cli.server_url import normalise_server
from kubegate.cli.trust import decide_trust

OutputOption = Annotated[Format, typer.Option("--output", "-o", help=OUTPUT_HELP)]
ServerArgument = Annotated[
    str | None,
    typer.Argument(
        help="The kubegate server's URL, e.g. https://kubegate.example.com:8443 "
        "(default: the current server).",
        show_default=False,
    ),
]


def _read_stdin(what: str, app: Application) -> str:
    value = sys.stdin.readline().strip()
    if not value:
        app.output.fail(f"--{what}-stdin: nothing on stdin")
    return value


def login(
    ctx: typer.Context,
    server: ServerArgument = None,
    email: Annotated[
        str | None, typer.Option(help="Your email (default: asked).", show_default=False)
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (scripts).")
    ] = False,
    token_stdin: Annotated[
        bool,
        typer.Option("--token-stdin", help="Sign in with an existing API token read from stdin."),
    ] = False,
    certificate_authority: Annotated[
        Path | None,
        typer.Option(help="PEM CA to pin for this server.", exists=False, show_default=False),
    ] = None,
    ca_fingerprint: Annotated[
        str | None,
        typer.Option(
            help="Trust the CA the server advertises if its SHA-256 fingerprint is this.",
            show_default=False,
        ),
    ] = None,
    insecure_skip_tls_verify: Annotated[
        bool,
        typer.Option(
            "--insecure-skip-tls-verify",
            help="Do not verify the server's certificate (development only).",
        ),
    ] = False,
    sso: Annotated[
        bool,
        typer.Option(
            "--sso",
            help="Log in through your organisation's single sign-on: approve a code in a "
            "browser, on this machine or any other (works over SSH).",
        ),
    ] = False,
    no_browser: Annotated[
        bool,
        typer.Option("--no-browser", help="With --sso: only print the link, open no browser."),
    ] = False,
    access_key: Annotated[
        bool,
        typer.Option("--access-key", help="Log in with an access key (asked, not echoed)."),
    ] = False,
    access_key_stdin: Annotated[
        bool,
        typer.Option("--access-key-stdin", help="Log in with an access key read from stdin."),
    ] = False,
) -> None:
    """Sign in to a kubegate server and make it the current one.

    Examples:

    ```
    kubegate login https://kubegate.example.com:8443 --sso
    kubegate login https://kubegate.example.com:8443
    echo "$PASSWORD" | kubegate login https://kg:8443 --email me@example.com --password-stdin
    echo "$KUBEGATE_TOKEN" | kubegate login https://kg:8443 --token-stdin
    echo "$KEY" | kubegate login https://kg:8443 --access-key-stdin
    ```
    """
    app = application(ctx)
    config = app.config()
    if server is None and config.current is None:
        app.output.fail("which server? run: kubegate login https://kubegate.example.com:8443")
    url = normalise_server(server or str(config.current))
    if password_stdin and token_stdin:
        app.output.fail("pass --password-stdin or --token-stdin, not both")
    if sso and (password_stdin or token_stdin or email):
        app.output.fail(
            "--sso signs in through the browser: drop --email, --password-stdin and --token-stdin"
        )
    if no_browser and not sso:
        app.output.fail("--no-browser goes with --sso")
    with_key = access_key or access_key_stdin
    if with_key and (sso or password_stdin or token_stdin or email):
        app.output.fail(
            "--access-key logs in with the key alone: drop --sso, --email, --password-stdin "
            "and --token-stdin"
        )
    previous = config.logins.get(url)
    trust = decide_trust(
        app,
        url,
        ca_file=certificate_authority,
        insecure=insecure_skip_tls_verify,
        ca_fingerprint=ca_fingerprint,
        previous=previous,
    )
    idle: int | None = None
    if sso:
        from kubegate.cli.login_sso import device_login

        credential, idle = device_login(app, url, trust, browser=not no_browser)
    elif with_key:
        credential = _access_key(app, stdin=access_key_stdin)
    elif token_stdin:
        credential = Credential(kind="token", token=_read_stdin("token", app))
    else:
        who = email or (previous.email if previous else None) or typer.prompt("Email", err=True)
        secret = (
            _read_stdin("password", app)
            if password_stdin
            else typer.prompt("Password", hide_input=True, err=True)
        )
        with ApiClient(url, trust) as api:
            answer = api.post("/api/v1/auth/login", {"email": who, "password": secret})
        expires = config_store.parse_time(answer.get("expires_at"))
        credential = Credential(kind="password", token=str(answer["token"]), expires_at=expires)
    with ApiClient(url, trust, credential.token) as api:
        me = api.get("/api/v1/me")
    if credential.expires_at is None and me.get("token_expires_at"):
        expires = config_store.parse_time(me["token_expires_at"])
        if expires is not None and expires.year < dt.MAXYEAR:  # a key without expiry: year 9999
            credential = replace(credential, expires_at=expires)
    made = Login(
        server=url,
        trust=trust,
        credential=credential,
        email=me["user"]["email"],
        role=me["user"]["role"],
        org_id=me["org_id"],
        org_name=me.get("org_name", ""),
        cluster=previous.cluster if previous and previous.org_id == me["org_id"] else None,
    )
    with config_store.updating(app.config_path) as box:
        box[0] = box[0].with_login(made, make_current=True)
    until = (
        f"; the login expires {ago_until(credential.expires_at)}" if credential.expires_at else ""
    )
    if idle:
        until += f" and ends sooner after {_span(idle)} unused"
    app.output.say(f"Logged in to {url} as {made.email} ({made.role}, {made.org_name}){until}.")


def _access_key(app: Application, *, stdin: bool) -> Credential:
    """An access key from stdin or a hidden prompt, refused here when mistyped (its
    checksum does not match: ``auth/access_keys.py``)."""
    from kubegate.auth.access_keys import looks_valid

    key = (
        _read_stdin("access-key", app)
        if stdin
        else typer.prompt("Access key", hide_input=True, err=True).strip()
    )
    if not looks_valid(key):
        app.output.fail(
            "that is not a kubegate access key: it starts with kgak_ and its checksum must "
            "match; copy it again"
        )
    return Credential(kind="access_key", token=key)


def _span(seconds: int) -> str:
    """``86400`` → ``1d``; ``5400`` → ``1h 30m``."""
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts) or "0s"


def ago_until(moment: dt.datetime | None) -> str:
    return ago(moment.isoformat()) + f" ({moment:%Y-%m-%d %H:%M} UTC)" if moment else "never"


def logout(
    ctx: typer.Context,
    server: ServerArgument = None,
    all_servers: Annotated[bool, typer.Option("--all", help="Log out of every server.")] = False,
) -> None:
    """Revoke this machine's login on the server and forget it.

    Examples:

    ```
    kubegate logout
    kubegate logout https://kubegate.example.com:8443
    kubegate logout --all
    ```
    """
    app = application(ctx)
    if env_login.active(app.environ):
        app.output.fail(
            f"{env_login.ACCESS_KEY} is set: this shell logs in with it and nothing is stored "
            "to log out of; unset it (the key works until it is deleted)"
        )
    config = app.config()
    targets = list(config.logins.values()) if all_servers else [app.login(server)]
    for target in targets:
        if target.credential.kind == "access_key":
            # A key is not revoked by logging out: it keeps working until it is deleted.
            app.output.note(
                f"The access key still works: delete it with kubegate access-key delete "
                f"(on {target.server}) when it is no longer needed."
            )
        else:
            try:
                with app.api(target) as api:
                    api.post("/api/v1/auth/logout")
            except ApiError as exc:
                if exc.status != 401:  # already invalid: nothing to revoke
                    app.output.note(f"warning: the server did not revoke it: {exc}")
        with config_store.updating(app.config_path) as box:
            box[0] = box[0].without(target.server)
        kube_token_mint.forget_login(app.environ, target.server)
        app.output.say(f"Logged out of {target.server}.")


def whoami(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """Show who you are on the current server and when the login ends: at its expiry, or
    sooner when it goes unused for its idle timeout (each use moves that forward).

    Example:

    ```
    kubegate whoami -o json
    ```
    """
    app = application(ctx)
    current = app.login()
    with app.api(current) as api:
        me = api.get("/api/v1/me")
    expires = config_store.parse_time(me.get("token_expires_at")) or current.credential.expires_at
    idle = config_store.parse_time(me.get("token_idle_expires_at"))
    row: dict[str, Any] = {
        "server": current.server,
        "email": me["user"]["email"],
        "role": me["user"]["role"],
        "organization": me.get("org_name", ""),
        "organization_id": me["org_id"],
        "login": current.credential.kind,
        "expires_at": expires.isoformat() if expires else None,
        "idle_expires_at": idle.isoformat() if idle else None,
    }
    if output is not Format.table:
        app.output.document(row, output)
        return
    for key, value in row.items():
        shown = value
        if key == "expires_at":
            shown = ago_until(expires)
        elif key == "idle_expires_at":
            if idle is None:
                continue
            shown = f"{ago_until(idle)} unless used before (each use moves it)"
        app.output.say(f"{key.replace('_', ' ').capitalize() + ':':<17}{shown}")


def server_list(ctx: typer.Context, output: OutputOption = Format.table) -> None:
    """List your logins; * marks the current server.

    Example:

    ```
    kubegate server list
    ```
    """
    app = application(ctx)
    config = app.config()
    rows = [
        {
            "current": server == config.current,
            "server": server,
            "email": one.email,
            "organization": one.org_name,
            "role": one.role,
            "cluster": one.cluster.name if one.cluster else None,
            "expires_at": (
                one.credential.expires_at.isoformat() if one.credential.expires_at else None
            ),
        }
        for server, one in sorted(config.logins.items())
    ]
    columns = [
        Column("", "current", lambda v: "*" if v else ""),
        Column("server", "server"),
        Column("user", "email"),
        Column("organization", "organization"),
        Column("cluster", "cluster", lambda v: v or "-"),
        Column("expires", "expires_at", lambda v: ago(v) if v else "never"),
    ]
    app.output.listing(rows, columns, output, empty="No logins; run: kubegate login SERVER")


def server_use(
    ctx: typer.Context,
    server: Annotated[str, typer.Argument(help="A server from `kubegate server list`.")],
) -> None:
    """Make another logged-in server the current one.

    Example:

    ```
    kubegate server use https://kubegate.example.com:8443
    ```
    """
    app = application(ctx)
    url = normalise_server(server)
    with config_store.updating(app.config_path) as box:
        chosen = box[0].logins.get(url)
        if chosen is None:
            app.output.fail(f"not logged in to {url}; run: kubegate login {url}")
        box[0] = box[0].with_login(chosen, make_current=True)
    app.output.say(f"Current server: {url} ({chosen.email}).")
