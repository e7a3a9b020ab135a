"""Tables. IDs are text UUIDs and times are UTC, so SQLite and PostgreSQL behave alike."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so Alembic migrations can drop and alter them on both
# databases (SQLite batch mode needs names).
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_ID = re.compile(r"^[0-9a-f]{32}$")


def new_id() -> str:
    """A random, URL-safe identifier."""
    return uuid.uuid4().hex


def is_id(value: str) -> bool:
    """True when ``value`` has the shape of an id kubegate issues (so it is worth a lookup)."""
    return bool(_ID.match(value))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC-aware ones")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # None for users who only sign in through SSO.
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"

    org_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    # Per organisation: deactivating a member of one organisation never touches another.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Cluster(Base):
    __tablename__ = "clusters"
    __table_args__ = (UniqueConstraint("org_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(16), default="standard")
    agent_credential_hash: Mapped[str] = mapped_column(String(128), unique=True)
    # Bumped by revoke-all: every kube token minted under an older epoch stops working.
    token_epoch: Mapped[int] = mapped_column(Integer, default=0)
    # Bumped by every grant change: the revision of the desired RBAC sent to the agent.
    rbac_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Where kubeconfigs that bypass the gateway (--direct, the admin kubeconfig) point: the
    # operator's setting wins over what the agent reported at its last connect.
    api_server_url: Mapped[str | None] = mapped_column(String(500), default=None)
    api_server_ca: Mapped[str | None] = mapped_column(Text, default=None)
    agent_api_server_url: Mapped[str | None] = mapped_column(String(500), default=None)
    agent_api_server_ca: Mapped[str | None] = mapped_column(Text, default=None)
    # The agent's namespace (where the admin kubeconfig's ServiceAccount lives).
    agent_namespace: Mapped[str | None] = mapped_column(String(63), default=None)


class ServiceAccount(Base):
    """A Kubernetes ServiceAccount kubegate manages on a cluster, bound to one role."""

    __tablename__ = "service_accounts"
    __table_args__ = (UniqueConstraint("cluster_id", "namespace", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    cluster_id: Mapped[str] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63))
    role: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(16))  # "namespace" or "cluster"
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_detail: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Grant(Base):
    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("cluster_id", "user_id", "role", "scope_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    cluster_id: Mapped[str] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(16))
    namespace: Mapped[str | None] = mapped_column(String(63), default=None)
    # "cluster" or "namespace/<ns>": one column for the uniqueness constraint.
    scope_key: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    status_detail: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A bearer credential for the REST API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # "api" (CLI login) or "session" (portal)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The absolute end of the credential's life.
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    # How the holder signed in: "password", "oidc" (browser) or "device" (kubegate login --sso).
    auth_method: Mapped[str] = mapped_column(
        String(16), default="password", server_default="password"
    )
    # Idle timeout: unused for this long, the credential ends (None: only expires_at counts).
    # last_used_at moves forward as it is used (at most about once a minute).
    idle_timeout_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)


class UserIdentity(Base):
    """A user's account at an OIDC provider (issuer + subject), linked on first SSO sign-in."""

    __tablename__ = "user_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    # The verified email the provider last asserted.
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OidcLogin(Base):
    """A browser sign-in under way at the OIDC provider: what the callback must match.

    Keyed by the SHA-256 of ``state``; bound to the browser that started it by the SHA-256 of
    a secret in a ``__Host-`` cookie. Used once: the callback deletes it.
    """

    __tablename__ = "oidc_logins"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(128))
    # The PKCE verifier must be sent in the clear to the provider, so it is kept as is; it is
    # worthless without the one-time code, and the row lives minutes.
    code_verifier: Mapped[str] = mapped_column(String(128))
    # Where to send the browser after sign-in (a path on this server).
    next_path: Mapped[str] = mapped_column(String(500), default="/")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class DeviceAuthorization(Base):
    """One ``kubegate login --sso`` (RFC 8628): the CLI polls with the device code, the
    person approves the user code in a signed-in browser."""

    __tablename__ = "device_authorizations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Normalised: upper case, no dash (what the person types is normalised the same way).
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    # "pending" -> "approved" | "denied"; "used" once the CLI has its credential.
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Who approved it, in which organisation.
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), default=None
    )
    org_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), default=None
    )
    # What the CLI said about itself (host name, client), shown on the approval page.
    client_description: Mapped[str] = mapped_column(String(200), default="")
    interval_seconds: Mapped[int] = mapped_column(Integer, default=5)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    last_polled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)


class AccessKey(Base):
    """A personal, long-lived credential for automation; only its SHA-256 is stored."""

    __tablename__ = "access_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The last characters of the secret, to tell keys apart in a list ("…x7Qa").
    hint: Mapped[str] = mapped_column(String(8))
    # Which clusters, and namespaces within them (see kubegate.domain.key_scope); None: all.
    scope: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)


class KubeToken(Base):
    """A short-lived bearer token for the Kubernetes API proxy; only its SHA-256 is stored."""

    __tablename__ = "kube_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    cluster_id: Mapped[str] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    # The cluster's token_epoch when minted: revoke-all bumps it, voiding older tokens.
    token_epoch: Mapped[int] = mapped_column(Integer)
    # Access keys arrive later; None = minted by a person's login token.
    access_key_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    # Access-key scope (kubegate.domain.scope.AccessScope.to_json()); None = unrestricted.
    scope: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # A token for a managed ServiceAccount (its kubeconfig through the gateway): the proxy
    # acts as the account, and ``user_id`` is the admin who issued it. Deleting the account
    # deletes its tokens.
    service_account_id: Mapped[str | None] = mapped_column(
        ForeignKey("service_accounts.id", ondelete="CASCADE"), default=None, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


_AUDIT_FILTERED = (
    ("actor_user", "actor_user_id"),
    ("actor_email", "actor_email"),
    ("cluster", "cluster_id"),
    ("action", "action"),
    ("verb", "verb"),
    ("resource", "resource"),
    ("namespace", "namespace"),
    ("status", "status_code"),
)


class AuditEvent(Base):
    """An admin action or a proxied request (``action`` ``kube.request``).

    Every column ``GET /api/v1/audit`` filters on has an ``(org_id, column, created_at)``
    index, so a filtered newest-first page is an index range scan (migration 0006_audit).
    The request columns (``verb`` .. ``user_agent``) are NULL for admin actions.
    ``recorded_at`` is when the row was written, which ``--follow`` pages by.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_org_time", "org_id", "created_at"),
        Index("ix_audit_events_created_at", "created_at"),
        Index("ix_audit_events_org_recorded", "org_id", "recorded_at", "id"),
        *(
            Index(f"ix_audit_events_org_{name}", "org_id", column, "created_at")
            for name, column in _AUDIT_FILTERED
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_id: Mapped[str | None] = mapped_column(String(32), default=None)
    actor_user_id: Mapped[str | None] = mapped_column(String(32), default=None)
    actor_email: Mapped[str] = mapped_column(String(320), default="")
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32), default="")
    target_id: Mapped[str] = mapped_column(String(64), default="")
    cluster_id: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    result: Mapped[str] = mapped_column(String(16))  # "success" or "failure"
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    verb: Mapped[str | None] = mapped_column(String(32), default=None)
    resource: Mapped[str | None] = mapped_column(String(128), default=None)
    subresource: Mapped[str | None] = mapped_column(String(64), default=None)
    namespace: Mapped[str | None] = mapped_column(String(63), default=None)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    source: Mapped[str | None] = mapped_column(String(64), default=None)
    user_agent: Mapped[str | None] = mapped_column(String(256), default=None)
    # When the row was written (a proxied request's lands up to a flush after created_at):
    # what --follow reads in order.
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
