"""Access keys: creating one (the secret answered once), listing them (never the secret)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from kubegate.server.schemas.common import Strict
from kubegate.server.schemas.users import PRINTABLE_PATTERN


class KeyScopeClusterIn(Strict):
    """One cluster a key may be used on: all of it, or only some of its namespaces."""

    cluster: str = Field(
        min_length=1, max_length=64, description="The id of a cluster of the organisation."
    )
    namespaces: list[str] | None = Field(
        default=None,
        max_length=100,
        description="Only these namespaces (DNS-1123 labels); omitted or null: the whole cluster.",
    )


class KeyScopeIn(Strict):
    """What a key may reach within its creator's permissions."""

    clusters: list[KeyScopeClusterIn] = Field(max_length=100)


class AccessKeyCreate(Strict):
    """A new access key for the caller."""

    name: str = Field(
        min_length=1,
        max_length=200,
        json_schema_extra={"pattern": PRINTABLE_PATTERN},
        description="A display name, unique among the caller's keys (e.g. ci-deploy).",
    )
    expires_at: dt.datetime | None = Field(
        default=None, description="When the key stops working (RFC 3339, with a time zone)."
    )
    expires_in_days: int | None = Field(
        default=None, ge=1, le=3650, description="Or: the key stops working this many days on."
    )
    scope: KeyScopeIn | None = Field(
        default=None,
        description="Omitted or null: everything the caller may do. A key used to create a "
        "key can only create keys within its own scope.",
    )


class KeyScopeClusterOut(BaseModel):
    cluster_id: str
    cluster_name: str | None = Field(description="null once the cluster was deleted.")
    namespaces: list[str] | None = Field(description="null: the whole cluster.")


class KeyScopeOut(BaseModel):
    clusters: list[KeyScopeClusterOut]


class AccessKeyOut(BaseModel):
    """An access key as lists show it: never its secret or the secret's hash."""

    id: str
    name: str
    hint: str = Field(description="The secret's last 4 characters, to tell keys apart.")
    user_id: str
    user_email: str
    scope: KeyScopeOut | None = Field(description="null: everything its creator may do.")
    created_at: dt.datetime
    last_used_at: dt.datetime | None = Field(
        description="When it was last used on the REST API, to within a minute; null: never."
    )
    expires_at: dt.datetime | None = Field(description="null: it does not expire.")


class AccessKeyCreated(BaseModel):
    access_key: AccessKeyOut
    secret: str = Field(
        description="The key (kgak_…). Shown once and stored only hashed: keep it now."
    )
