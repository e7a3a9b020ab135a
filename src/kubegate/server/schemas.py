"""Shapes of the REST API's requests and answers (pydantic: the API's edge only)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. validation_failed.")
    message: str = Field(description="What went wrong and what to do, for a person.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    """Every error the REST API returns."""

    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` as ``cursor`` to get the next."""

    items: list[T]
    next_cursor: str | None = Field(
        default=None, description="Opaque cursor of the next page; null on the last page."
    )


class LoginRequest(Strict):
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: str
    email: str
    display_name: str
    role: str = Field(description="admin or member, in the caller's organisation.")
    is_active: bool


class LoginResponse(BaseModel):
    token: str = Field(description="Bearer API token; shown once, stored only hashed.")
    expires_at: dt.datetime
    user: UserOut
    org_id: str


class MeResponse(BaseModel):
    user: UserOut
    org_id: str
    org_name: str


class ClusterCreate(Strict):
    name: str = Field(
        min_length=1, max_length=63, description="DNS-1123 label, unique in the organisation."
    )
    kind: str = Field(default="standard", description="standard or sandbox.")


class ClusterOut(BaseModel):
    id: str
    name: str
    kind: str
    online: bool = Field(description="Whether the cluster's agent holds a tunnel right now.")
    last_seen_at: dt.datetime | None
    created_at: dt.datetime


class ClusterRegistered(BaseModel):
    cluster: ClusterOut
    agent_credential: str = Field(
        description="The agent's credential. Shown once and stored only hashed: keep it now."
    )
