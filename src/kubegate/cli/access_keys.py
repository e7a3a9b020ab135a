"""``kubegate access-key create|list|delete``: keys for automation, yours (or, for admins,
any member's).

A key does what its creator may, narrowed by its scope (``--cluster NAME[:ns1,ns2]``). The
secret is printed once, alone on stdout (so ``KEY=$(kubegate access-key create ci)`` keeps
just the key); kubegate stores only its hash. Use it with ``kubegate login SERVER
--access-key`` or, in CI, ``KUBEGATE_ACCESS_KEY`` in the environment.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

import typer

from kubegate.cli.api import ApiClient
from kubegate.cli.application import Application, application
from kubegate.cli.config_store import Login
from kubegate.cli.login import OutputOption
from kubegate.cli.output import Column, Format, ago

_DURATION = re.compile(r"([1-9][0-9]{0,4})([mhdw])")
_UNITS = {
    "m": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "w": dt.timedelta(weeks=1),
}

UserOption = Annotated[
    str | None,
    typer.Option(
        "--user", help="A member's email: their keys instead of yours (admins).", show_default=False
    ),
]


def parse_duration(text: str) -> dt.timedelta:
    """``90m``, ``12h``, ``30d`` or ``8w`` as a timedelta; BadParameter otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration such as 90m, 12h, 30d or 8w")
    return int(match[1]) * _UNITS[match[2]]


def parse_cluster(text: str) -> tuple[str, list[str] | None]:
    """``prod`` (the whole cluster) or ``prod:dev,test`` (those namespaces of it)."""
    name, colon, rest = text.partition(":")
    if not name:
        raise typer.BadParameter(f"{text!r}: give a cluster, e.g. prod or prod:dev,test")
    if not colon:
        return name, None
    namespaces = [n.strip() for n in rest.split(",") if n.strip()]
    if not namespaces:
        raise typer.BadParameter(f"{text!r}: name namespaces after ':', e.g. prod:dev,test")
    return name, namespaces


def scope_text(scope: dict[str, Any] | None) -> str:
    """A key's scope as a table cell: ``all your access`` or ``prod (dev, test), ci``."""
    if scope is None:
        return "all your access"
    parts = []
    for one in scope["clusters"]:
        name = one.get("cluster_name") or f"{one['cluster_id']} (deleted)"
        namespaces = one.get("namespaces")
        parts.append(f"{name} ({', '.join(namespaces)})" if namespaces else name)
    return ", ".join(parts)


def _keys_path(app: Application, api: ApiClient, user: str | None) -> str:
    """Where the keys live: the caller's, or the member's with that email (admins)."""
    if user is None:
        return "/api/v1/access-keys"
    wanted = user.strip().lower()
    for member in api.pages("/api/v1/users"):
        if member["email"] == wanted:
            return f"/api/v1/users/{member['id']}/access-keys"
    app.output.fail(f"{user} is not a member of this organisation; see the portal's members")


def access_key_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the key, unique among yours.")],
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in",
            help="It stops working after this long: 12h, 30d, 8w.",
            show_default=False,
        ),
    ] = None,
    clusters: Annotated[
        list[str] | None,
        typer.Option(
            "--cluster",
            "-c",
            help="Only this cluster, or only these namespaces of it (NAME:ns1,ns2); repeat for "
            "more. Default: all your access.",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = Format.table,
) -> None:
    """Create an access key for automation; its secret is printed once.

    The key can do what you can, and only within its scope. Only the secret goes to
    stdout; keep it in your CI's secret store.

    Examples:

    ```
    kubegate access-key create ci-deploy --expires-in 90d --cluster prod:dev,test
    KEY=$(kubegate access-key create nightly --cluster staging)
    ```
    """
    app = application(ctx)
    login = app.login()
    body: dict[str, Any] = {"name": name}
    if expires_in is not None:
        expires = dt.datetime.now(dt.UTC) + parse_duration(expires_in)
        body["expires_at"] = expires.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    with app.api(login) as api:
        if clusters:
            entries = []
            for text in clusters:
                wanted, namespaces = parse_cluster(text)
                found = app.cluster(api, login, wanted)
                entry: dict[str, Any] = {"cluster": found["id"]}
                if namespaces is not None:
                    entry["namespaces"] = namespaces
                entries.append(entry)
            body["scope"] = {"clusters": entries}
        created = api.post("/api/v1/access-keys", body)
    if output is not Format.table:
        app.output.document(created, output)
        return
    key = created["access_key"]
    until = f"expires {ago(key['expires_at'])}" if key["expires_at"] else "does not expire"
    app.output.note(
        f"Created access key {key['name']} ({key['id']}); scope: {scope_text(key['scope'])}; "
        f"{until}."
    )
    app.output.say(created["secret"])
    app.output.note(
        "Keep it now: it is shown only this once (kubegate stores only its hash). "
        f"Use it with: kubegate login {login.server} --access-key, or KUBEGATE_ACCESS_KEY."
    )


def access_key_list(
    ctx: typer.Context, user: UserOption = None, output: OutputOption = Format.table
) -> None:
    """List your access keys (or, for admins, a member's): never their secrets.

    Examples:

    ```
    kubegate access-key list
    kubegate access-key list --user ada@example.com -o json
    ```
    """
    app = application(ctx)
    login = app.login()
    with app.api(login) as api:
        rows = list(api.pages(_keys_path(app, api, user)))
    columns = [
        Column("id", "id"),
        Column("name", "name"),
        Column("key", "hint", lambda v: f"kgak_…{v}"),
        Column("scope", "scope", scope_text),
        Column("created", "created_at", ago),
        Column("last used", "last_used_at", ago),
        Column("expires", "expires_at", lambda v: ago(v) if v else "never"),
    ]
    app.output.listing(
        rows, columns, output, empty="No access keys; create one: kubegate access-key create NAME"
    )


def access_key_delete(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key's id or name.")],
    user: UserOption = None,
) -> None:
    """Delete an access key: it stops working at once, with its kube tokens and streams.

    Examples:

    ```
    kubegate access-key delete ci-deploy
    kubegate access-key delete 3f2a9c0e5b7d4e1f8a6b2c9d0e1f2a3b --user ada@example.com
    ```
    """
    app = application(ctx)
    login: Login = app.login()
    with app.api(login) as api:
        path = _keys_path(app, api, user)
        keys = list(api.pages(path))
        matching = [k for k in keys if k["id"] == key] or [k for k in keys if k["name"] == key]
        if not matching:
            app.output.fail(f"no access key {key!r}; see: kubegate access-key list")
        if len(matching) > 1:
            app.output.fail(f"{len(matching)} keys are named {key!r}; delete one by its id")
        [chosen] = matching
        api.delete(f"{path}/{chosen['id']}")
    app.output.say(f"Deleted access key {chosen['name']} ({chosen['id']}).")
