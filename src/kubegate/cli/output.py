"""How the CLI prints: listings as a table, JSON or YAML; errors as one line on stderr.

Commands build plain rows (dicts of JSON values) and name the columns a table shows; this
module owns every format, so ``-o json`` of any listing is the same rows a table shows, with
their full values (ids unabbreviated, times in RFC 3339).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text


class Format(enum.StrEnum):
    """``-o`` / ``--output``."""

    table = "table"
    json = "json"
    yaml = "yaml"


OUTPUT_HELP = "Output format: table, json or yaml."


@dataclass(frozen=True, slots=True)
class Column:
    """One table column: its header, the row key, and how a value is shown."""

    header: str
    key: str
    show: Callable[[Any], str] = lambda value: "" if value is None else str(value)


class Output:
    """stdout for results, stderr for progress and errors (so pipes get only results).

    No emoji codes: a CA fingerprint such as ``D4:CD:09`` would print a compact disc."""

    def __init__(self) -> None:
        self.out = Console(soft_wrap=True, highlight=False, emoji=False)
        self.err = Console(stderr=True, soft_wrap=True, highlight=False, emoji=False)

    def listing(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[Column],
        fmt: Format,
        *,
        empty: str,
    ) -> None:
        """Print ``rows``; on a table with no rows, ``empty`` (what to do next) on stderr."""
        if fmt is Format.json:
            self.out.print_json(json.dumps(list(rows), default=_json_default))
        elif fmt is Format.yaml:
            self.raw(_yaml(list(rows)))
        elif not rows:
            self.err.print(empty)
        else:
            table = Table(box=None, pad_edge=False, header_style="bold")
            for column in columns:
                table.add_column(column.header.upper())
            for row in rows:
                table.add_row(*(Text(column.show(row.get(column.key))) for column in columns))
            self.out.print(table)

    def document(self, value: Mapping[str, Any], fmt: Format) -> None:
        """One object as JSON or YAML (``-o`` of a non-listing command)."""
        if fmt is Format.yaml:
            self.raw(_yaml(dict(value)))
        else:
            self.out.print_json(json.dumps(value, default=_json_default))

    def raw(self, text: str) -> None:
        """Text as it is (a kubeconfig, YAML): no markup, no wrapping."""
        typer.echo(text, nl=not text.endswith("\n"))

    def say(self, message: str) -> None:
        """A result sentence for a person (stdout); printed as it is, no markup."""
        self.out.print(message, markup=False)

    def note(self, message: str) -> None:
        """Progress or advice (stderr); printed as it is, no markup."""
        self.err.print(message, markup=False)

    def fail(self, message: str, code: int = 1) -> NoReturn:
        """End the command: ``error: <message>`` on stderr, exit ``code``."""
        self.err.print(f"[red]error:[/red] {escape(message)}", markup=True)
        raise typer.Exit(code)


def ago(value: str | None, now: dt.datetime | None = None) -> str:
    """An RFC 3339 time as "3m ago" / "in 2h" (the exact time is in ``-o json``)."""
    if not value:
        return "never"
    moment = dt.datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    delta = (now or dt.datetime.now(dt.UTC)) - moment
    seconds = int(abs(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            amount = f"{seconds // size}{unit}"
            break
    else:
        amount = f"{seconds}s"
    return f"{amount} ago" if delta.total_seconds() >= 0 else f"in {amount}"


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _yaml(value: Any) -> str:
    import yaml  # only for -o yaml

    return yaml.safe_dump(_plain(value), sort_keys=False)


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_json_default))
