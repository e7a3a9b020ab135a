"""How the portal writes times: relative for reading at a glance, exact on hover, and
lifetimes as a person says them."""

from __future__ import annotations

import datetime as dt

_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"))


def relative_time(moment: dt.datetime, now: dt.datetime) -> str:
    """``moment`` as a person says it from ``now``: ``just now``, ``5 minutes ago``,
    ``in 2 hours``, ``3 days ago`` (whole units, rounded down)."""
    seconds = int((now - moment).total_seconds())
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now"
    for size, unit in _UNITS:
        if seconds >= size:
            count = seconds // size
            words = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {words}" if ahead else f"{words} ago"
    return "in 1 minute" if ahead else "1 minute ago"


def exact_time(moment: dt.datetime) -> str:
    """``2026-12-03 08:11:58 UTC``: what the ``title`` of a relative time shows."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def as_sentence(message: str) -> str:
    """``message`` to open a sentence of the page's: a capital first letter (unless its first
    word is a field or setting name, ``duration_seconds``, which keeps its spelling), no full
    stop of its own."""
    said = message.rstrip(".")
    if "_" in said.split(" ", 1)[0]:
        return said
    return f"{said[:1].upper()}{said[1:]}"


def spoken_duration(seconds: int) -> str:
    """``15 minutes``, ``1 hour``, ``90 seconds``: a token lifetime as a person says it."""
    for size, unit in ((3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"
