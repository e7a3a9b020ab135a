"""``kubegate audit export``: the audit log as JSON lines, for a SIEM or an archive (admins).

Every matching event, one JSON object per line, in recorded order (``cli/audit.py``'s
:class:`RecordedPages`), to stdout or a new file of mode 0600 (``--append`` adds to one).
It stops where the API's settle horizon is (a few seconds ago) and says how to continue:
``--after CURSOR``, or ``--cursor-file``, which it reads at the start and rewrites after every
page, so a timer running the same command ships each event at least once, and repeats at
most the page that was being written when a run died (events carry unique ids).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from kubegate.cli.application import Application, application
from kubegate.cli.audit import (
    EPOCH,
    ActionFilter,
    ClusterFilter,
    Filters,
    NamespaceFilter,
    RecordedPages,
    ResourceFilter,
    SinceFilter,
    StatusFilter,
    UntilFilter,
    UserFilter,
    VerbFilter,
)


def audit_export(
    ctx: typer.Context,
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="A new file to write (mode 0600), or - for stdout.",
        ),
    ] = "-",
    append: Annotated[
        bool, typer.Option("--append", help="Add to the file if it exists (with --after).")
    ] = False,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            help="Continue where an earlier export ended (the cursor it printed).",
            show_default=False,
        ),
    ] = None,
    cursor_file: Annotated[
        Path | None,
        typer.Option(
            "--cursor-file",
            help="Start where the cursor in this file says (if it exists) and keep it there "
            "after every page: run the same command again to export only what is new.",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    user: UserFilter = None,
    cluster: ClusterFilter = None,
    verb: VerbFilter = None,
    resource: ResourceFilter = None,
    namespace: NamespaceFilter = None,
    status: StatusFilter = None,
    since: SinceFilter = None,
    until: UntilFilter = None,
    action: ActionFilter = None,
) -> None:
    """Export matching audit events as JSON lines, in the order they were recorded (admins).

    One event per line, every field the API gives, for a SIEM or an archive. It pages through
    everything recorded until a few seconds ago, then says on stderr how to continue later
    with `--after` (nothing is skipped or repeated between runs), or keeps that cursor in
    `--cursor-file` for the next run. A file gets a progress count on stderr while it is
    written.

    Examples:

    ```
    kubegate audit export --output audit.jsonl
    kubegate audit export --since 7d --action kube.request | gzip > week.jsonl.gz
    kubegate audit export --output audit.jsonl --append --after CURSOR
    kubegate audit export --cursor-file audit.cursor >> /var/log/kubegate-audit.jsonl
    ```
    """
    app = application(ctx)
    login = app.login()
    filters = Filters(user, cluster, verb, resource, namespace, status, since, until, action)
    with app.api(login) as api:
        params = filters.params(app, api, login)
        saved = _read_cursor(app, cursor_file) if cursor_file and after is None else None
        start = after or saved or params.get("since") or EPOCH
        with _destination(app, output, append) as (sink, progress):
            pages = RecordedPages(api, params, start)
            count = 0
            more = True
            while more:
                events, more = pages.next()
                for event in events:
                    sink.write(json.dumps(event, separators=(",", ":")) + "\n")
                sink.flush()
                if cursor_file is not None:  # after the page is out: at least once
                    _write_cursor(cursor_file, pages.after)
                count += len(events)
                progress(count)
    where = "stdout" if output == "-" else output
    if cursor_file is not None:
        app.output.note(f"Exported {count} events to {where}; the cursor is in {cursor_file}.")
        return
    again = "kubegate audit export" + ("" if output == "-" else f" --output {output} --append")
    app.output.note(
        f"Exported {count} events to {where}. Continue from here later with: {again} "
        f"--after {pages.after} (and the same filters)"
    )


def _read_cursor(app: Application, path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        app.output.fail(f"cannot read {path}: {exc.strerror}")
    return text or None


def _write_cursor(path: Path, cursor: str) -> None:
    """Replace the file's cursor atomically (a crash leaves the old one or the new one)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(cursor + "\n", encoding="utf-8")
    os.replace(partial, path)


@contextmanager
def _destination(app: Application, output: str, append: bool) -> Iterator[tuple[IO[str], Any]]:
    """stdout, or the file (created 0600; an existing one only with ``--append``), and a
    callback that shows the running count on stderr (files on a terminal only)."""
    if output == "-":
        yield typer.get_text_stream("stdout"), lambda count: None
        return
    path = Path(output)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        app.output.fail(f"{output} exists; pass --append to add to it, or name a new file")
    except OSError as exc:
        app.output.fail(f"cannot write {output}: {exc.strerror}")
    with os.fdopen(fd, "w", encoding="utf-8") as sink:
        if not app.output.err.is_terminal:
            yield sink, lambda count: None
            return
        with app.output.err.status(f"Exporting to {output}...") as status:
            yield sink, lambda count: status.update(f"Exporting to {output}: {count} events")
