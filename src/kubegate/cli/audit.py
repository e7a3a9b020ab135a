"""``kubegate audit [--follow]``: the audit log (admins); ``audit_export.py`` exports it.

``kubegate audit`` prints the latest matching events as lines, oldest first (a log reads
downwards), and with ``--follow`` keeps printing new ones as they are recorded, polling the
API's ``after`` cursor (``server/audit_query.py`` says why that order misses nothing, events
written late after a database outage included). ``-o json`` prints a JSON array, or with
``--follow`` one JSON object per line.

The filters are the API's (``--user`` is its ``actor``); ``--cluster`` takes a name or, for a
deleted cluster, its id; ``--since``/``--until`` take an RFC 3339 time or a duration back
from now (``90m``, ``12h``, ``7d``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from kubegate.cli.access_keys import parse_duration
from kubegate.cli.api import ApiClient, ApiError
from kubegate.cli.application import Application, application
from kubegate.cli.clusters import all_clusters
from kubegate.cli.config_store import Login
from kubegate.cli.login import OutputOption
from kubegate.cli.output import Format
from kubegate.domain.access import CLUSTER_ID

PATH = "/api/v1/audit"
PAGE = 200  # the API's largest page
POLL_SECONDS = 2.0
EPOCH = "1970-01-01T00:00:00Z"
_TIME = re.compile(r"^[0-9]{4}-")
_FILTER_PARAMETERS = (
    "user",
    "cluster",
    "verb",
    "resource",
    "namespace",
    "status",
    "since",
    "until",
    "action",
)

UserFilter = Annotated[
    str | None,
    typer.Option("--user", "-u", help="Who acted: an email or a user id.", show_default=False),
]
ClusterFilter = Annotated[
    str | None,
    typer.Option(
        "--cluster", "-c", help="A cluster's name, or a deleted cluster's id.", show_default=False
    ),
]
VerbFilter = Annotated[
    str | None,
    typer.Option(
        "--verb", help="Proxied requests with this verb: get, delete, ...", show_default=False
    ),
]
ResourceFilter = Annotated[
    str | None,
    typer.Option(
        "--resource",
        help="Proxied requests for this resource (pods) or subresource (pods/exec).",
        show_default=False,
    ),
]
NamespaceFilter = Annotated[
    str | None,
    typer.Option(
        "--namespace", "-n", help="Proxied requests in this namespace.", show_default=False
    ),
]
StatusFilter = Annotated[
    str | None,
    typer.Option(
        "--status",
        help="Proxied requests answered with this status (403) or class (5xx).",
        show_default=False,
    ),
]
SinceFilter = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only events at or after this: an RFC 3339 time or a duration ago (1h, 7d).",
        show_default=False,
    ),
]
UntilFilter = Annotated[
    str | None,
    typer.Option(
        "--until",
        help="Only events before this: an RFC 3339 time or a duration ago.",
        show_default=False,
    ),
]
ActionFilter = Annotated[
    str | None,
    typer.Option(
        "--action",
        help="Only this action: kube.request, cluster.register, user.update, ...",
        show_default=False,
    ),
]


@dataclass(frozen=True, slots=True)
class Filters:
    """The command line's filters, before the cluster name is looked up."""

    user: str | None = None
    cluster: str | None = None
    verb: str | None = None
    resource: str | None = None
    namespace: str | None = None
    status: str | None = None
    since: str | None = None
    until: str | None = None
    action: str | None = None

    def params(self, app: Application, api: ApiClient, login: Login) -> dict[str, str]:
        """The API's query parameters for these filters."""
        params = {
            "actor": self.user,
            "verb": self.verb,
            "resource": self.resource,
            "namespace": self.namespace,
            "status": self.status,
            "action": self.action,
            "since": moment(self.since, "--since") if self.since else None,
            "until": moment(self.until, "--until") if self.until else None,
            "cluster_id": cluster_id(app, api, login, self.cluster) if self.cluster else None,
        }
        return {name: value for name, value in params.items() if value is not None}


def moment(text: str, option: str, now: dt.datetime | None = None) -> str:
    """An RFC 3339 time as it is (the server checks it), or a duration (``90m``, ``12h``,
    ``7d``) as the time that long before ``now``."""
    if _TIME.match(text):
        return text
    try:
        ago = parse_duration(text)
    except typer.BadParameter:
        raise typer.BadParameter(
            f"{text!r} is neither an RFC 3339 time (2025-01-31T09:00:00Z) nor a duration such "
            "as 90m, 12h or 7d",
            param_hint=option,
        ) from None
    then = (now or dt.datetime.now(dt.UTC)) - ago
    return then.isoformat().replace("+00:00", "Z")


def cluster_id(app: Application, api: ApiClient, login: Login, wanted: str) -> str:
    """The id of the cluster named ``wanted``; an id as it is (deleted clusters keep their
    events, and their ids)."""
    if CLUSTER_ID.fullmatch(wanted):
        return wanted
    page = api.get("/api/v1/clusters", params={"name": wanted})
    if page["items"]:
        return str(page["items"][0]["id"])
    app.output.fail(
        f"{login.server} has no cluster named {wanted!r}; see: kubegate cluster list (a "
        "deleted cluster's events are found by its id)"
    )


def event_line(event: dict[str, Any], clusters: dict[str, str]) -> str:
    """One event as a log line: time, who, where, what, outcome."""
    when = dt.datetime.fromisoformat(event["created_at"]).astimezone(dt.UTC)
    who = event["actor_email"] or "(kubegate)"
    where = clusters.get(event["cluster_id"] or "", event["cluster_id"] or "-")
    if event["action"] == "kube.request":
        detail = event["detail"]
        resource = event["resource"] or ""
        if event["subresource"]:
            resource = f"{resource}/{event['subresource']}"
        parts = [event["verb"] or detail.get("method", "?"), resource or detail.get("path", "")]
        if detail.get("name"):
            parts.append(str(detail["name"]))
        if event["namespace"]:
            parts.append(f"-n {event['namespace']}")
        if detail.get("container"):
            parts.append(f"-c {detail['container']}")
        if detail.get("command"):
            parts.append("-- " + " ".join(str(word) for word in detail["command"]))
        what = " ".join(part for part in parts if part)
        outcome = str(event["status_code"])
    else:
        what = event["action"]
        if event["target_type"]:
            what += f" {event['target_type']} {event['target_id']}".rstrip()
        outcome = event["result"]
    return f"{when:%Y-%m-%dT%H:%M:%SZ}  {who}  {where}  {what}  {outcome}"


class _Printer:
    """Prints events as lines or JSON (one object per line while following)."""

    def __init__(self, app: Application, api: ApiClient, fmt: Format) -> None:
        self._app = app
        self._fmt = fmt
        self._clusters: dict[str, str] | None = None
        self._api = api

    def lines(self, events: list[dict[str, Any]]) -> None:
        if self._fmt is Format.json:
            for event in events:
                self._app.output.raw(json.dumps(event, separators=(",", ":")))
            return
        if self._clusters is None:
            self._clusters = {c["id"]: c["name"] for c in all_clusters(self._api)}
        for event in events:
            self._app.output.raw(event_line(event, self._clusters))


def latest(
    api: ApiClient, params: dict[str, str], limit: int
) -> tuple[list[dict[str, Any]], str, bool]:
    """The latest ``limit`` matching events oldest first, the follow cursor of the moment
    they were read, and whether older ones were left out."""
    newest: list[dict[str, Any]] = []
    cursor: str | None = None
    follow: str | None = None
    while True:
        query = {**params, "limit": str(min(PAGE, limit - len(newest)))}
        if cursor:
            query["cursor"] = cursor
        page = api.get(PATH, params=query)
        follow = follow or str(page["follow_cursor"])
        newest += page["items"]
        cursor = page["next_cursor"]
        if cursor is None or len(newest) >= limit:
            return list(reversed(newest)), follow, cursor is not None


class RecordedPages:
    """The API's pages in recorded order from a position; :attr:`after` is where the next
    page starts (keep it to continue later)."""

    def __init__(self, api: ApiClient, params: dict[str, str], after: str) -> None:
        self._api = api
        self._params = params
        self.after = after

    def next(self) -> tuple[list[dict[str, Any]], bool]:
        """The next page, and whether another is ready now (False: caught up)."""
        page = self._api.get(PATH, params={**self._params, "limit": str(PAGE), "after": self.after})
        self.after = str(page["follow_cursor"])
        return list(page["items"]), page["next_cursor"] is not None


def audit_log(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events as they are recorded.")
    ] = False,
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, max=10_000, help="How many of the latest events to show."),
    ] = 50,
    user: UserFilter = None,
    cluster: ClusterFilter = None,
    verb: VerbFilter = None,
    resource: ResourceFilter = None,
    namespace: NamespaceFilter = None,
    status: StatusFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    action: ActionFilter = None,
    output: OutputOption = Format.table,
) -> None:
    """Show the audit log: admin actions and requests through kubegate (admins).

    The latest events, oldest first; `--follow` keeps printing new ones until Ctrl-C. Filters
    combine (AND). `-o json` prints a JSON array, or with `--follow` one object per line.
    `kubegate audit export` writes everything that matches as JSON lines.

    Examples:

    ```
    kubegate audit --since 1h
    kubegate audit --cluster prod --resource pods/exec --follow
    kubegate audit --user ada@example.com --status 4xx -o json
    ```
    """
    if ctx.invoked_subcommand is not None:
        given = [
            f"--{name.replace('_', '-')}"
            for name in ("follow", "limit", "output", *_FILTER_PARAMETERS)
            if (source := ctx.get_parameter_source(name)) is not None
            and source.name not in ("DEFAULT", "DEFAULT_MAP")
        ]
        if given:
            application(ctx).output.fail(
                f"put {', '.join(given)} after `{ctx.invoked_subcommand}`, e.g. kubegate audit "
                f"{ctx.invoked_subcommand} {given[0]} ..."
            )
        return
    if follow and output is Format.yaml:
        raise typer.BadParameter("--follow prints table lines or JSON lines", param_hint="-o")
    app = application(ctx)
    login = app.login()
    filters = Filters(user, cluster, verb, resource, namespace, status, since, until, action)
    with app.api(login) as api:
        params = filters.params(app, api, login)
        shown, cursor, more = latest(api, params, limit)
        printer = _Printer(app, api, output)
        if not follow:
            if output is Format.table:
                printer.lines(shown)
            else:
                app.output.listing(shown, (), output, empty="")
            if not shown:
                app.output.note("No matching audit events.")
            elif more:
                app.output.note(
                    f"The latest {len(shown)} shown; more with --limit, or all of them with: "
                    "kubegate audit export"
                )
            return
        printer.lines(shown)
        seen = {event["id"] for event in shown}
        try:
            _follow(app, api, params, cursor, seen, printer)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def _follow(
    app: Application,
    api: ApiClient,
    params: dict[str, str],
    cursor: str,
    seen: set[str],
    printer: _Printer,
) -> None:
    """Print what is recorded after ``cursor`` until interrupted, riding out a server that
    restarts or a database that is down (the position is kept; nothing is skipped).

    The listing's cursor starts a little before the listing (the API's settle time), so
    events it showed can come again: ``seen`` (the listed ids) drops them."""
    pages = RecordedPages(api, params, cursor)
    while True:
        try:
            more = True
            while more:
                events, more = pages.next()
                printer.lines([event for event in events if event["id"] not in seen])
        except ApiError as exc:
            if exc.status is not None and exc.status < 500:
                raise
            app.output.note(f"{exc.message}; retrying in {POLL_SECONDS:.0f} s")
        time.sleep(POLL_SECONDS)
