"""What the portal's *New access key* form asks, read into the REST API's request.

Pure: the form's fields (strings, as a browser sends them) in, an
:class:`~kubegate.server.schemas.access_keys.AccessKeyCreate` out, or a
:class:`~kubegate.errors.ValidationFailed` that says in words what to change. The checks of
the key itself (a unique name, a scope within the organisation's clusters, a key-made key's
limits) stay with ``server/key_management.py``, which the REST API uses too.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

import pydantic

from kubegate.errors import ValidationFailed
from kubegate.server.schemas.access_keys import AccessKeyCreate, KeyScopeClusterIn, KeyScopeIn

NAME_MAX = 200
MAX_DAYS = 3650
EXPIRY_CHOICES = (
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In 1 year"),
    ("7", "In 7 days"),
    ("date", "On a date"),
    ("never", "Never"),
)
"""The expiry ``<select>``'s options: days from now, a date, or never."""
_SEPARATORS = re.compile(r"[\s,]+")


def key_name(raw: str) -> str:
    """The key's name as typed, trimmed; it must be there and fit."""
    name = raw.strip()
    if not name:
        raise ValidationFailed(
            "give the key a name (e.g. ci-deploy), so that you can tell it apart later",
            details={"field": "name"},
        )
    if len(name) > NAME_MAX:
        raise ValidationFailed(
            f"the name is {len(name)} characters long; make it at most {NAME_MAX}",
            details={"field": "name"},
        )
    return name


def key_expiry(choice: str, on_date: str, today: dt.date) -> tuple[int | None, dt.datetime | None]:
    """``(expires_in_days, expires_at)`` from the expiry choice (a number of days, ``date``
    with ``on_date`` as ``YYYY-MM-DD``: the key stops at 00:00 UTC that day, or ``never``),
    ``today`` being the UTC date now. Both None: the key never expires."""
    if choice == "never":
        return None, None
    if choice == "date":
        text = on_date.strip()
        if not text:
            raise ValidationFailed(
                "enter the date the key stops working, or choose another expiry",
                details={"field": "expires_on"},
            )
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise ValidationFailed(
                f"{text[:40]!r} is not a date: write it as YYYY-MM-DD, e.g. "
                f"{(today + dt.timedelta(days=30)).isoformat()}",
                details={"field": "expires_on"},
            ) from None
        if day <= today:
            raise ValidationFailed(
                f"the key would stop working on {day.isoformat()}, which is not after today "
                f"({today.isoformat()}, UTC): choose a later date",
                details={"field": "expires_on"},
            )
        if day > today + dt.timedelta(days=MAX_DAYS):
            raise ValidationFailed(
                f"{day.isoformat()} is more than {MAX_DAYS} days away: choose an earlier date, "
                "or Never",
                details={"field": "expires_on"},
            )
        return None, dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    if choice.isdecimal() and 1 <= int(choice) <= MAX_DAYS:
        return int(choice), None
    raise ValidationFailed(
        f"{choice[:40]!r} is not an expiry this form offers: choose a number of days, a date, "
        "or Never",
        details={"field": "expires"},
    )


def key_namespaces(raw: str) -> list[str] | None:
    """The namespaces typed for one cluster (separated by commas or spaces, each once, in
    order); none typed: the whole cluster (None)."""
    names = [one for one in _SEPARATORS.split(raw.strip()) if one]
    return list(dict.fromkeys(names)) or None


def key_scope(
    limited: bool, cluster_ids: Sequence[str], namespaces: Mapping[str, str]
) -> KeyScopeIn | None:
    """The scope from the form: None (everything the creator may do) unless ``limited``;
    then the ticked clusters, each whole or only the namespaces typed for it."""
    if not limited:
        return None
    if not cluster_ids:
        raise ValidationFailed(
            "tick at least one cluster for the key to reach, or choose “Everything I can do”",
            details={"field": "scope.clusters"},
        )
    try:
        return KeyScopeIn(
            clusters=[
                KeyScopeClusterIn(cluster=one, namespaces=key_namespaces(namespaces.get(one, "")))
                for one in dict.fromkeys(cluster_ids)
            ]
        )
    except pydantic.ValidationError as exc:
        raise ValidationFailed(
            "the scope is not one kubegate can keep: at most 100 clusters and 100 namespaces "
            "in each, cluster ids as the form lists them",
            details={"field": "scope.clusters"},
        ) from exc


def key_request(
    name: str,
    expiry: tuple[int | None, dt.datetime | None],
    scope: KeyScopeIn | None,
) -> AccessKeyCreate:
    """The REST API's create request for what the form said."""
    days, at = expiry
    return AccessKeyCreate(name=name, expires_in_days=days, expires_at=at, scope=scope)
