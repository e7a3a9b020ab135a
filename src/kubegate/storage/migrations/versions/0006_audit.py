"""Audit events get real columns for what the audit log is filtered on.

Proxied requests kept their verb, resource, namespace and status only inside ``detail``
(JSON), so ``GET /api/v1/audit`` could not filter on them in SQL. ``audit_events`` gains:

- ``verb``, ``resource``, ``subresource``, ``namespace``: the request's RequestInfo;
- ``status_code``: the HTTP status kubectl got (NULL for admin actions, whose outcome is
  ``result``);
- ``source``: the client's address; ``user_agent``: its ``User-Agent``, clipped;
- ``recorded_at``: when the row was written. A proxied request's ``created_at`` is when it
  happened, but the row lands up to a flush later (much later after a database outage), so
  ``kubegate audit --follow`` reads in ``recorded_at`` order to miss none (existing rows get
  their ``created_at``).

Each filter has an ``(org_id, <column>, created_at)`` index, so a filtered, newest-first page
is an index range scan; ``created_at`` alone serves the retention sweep. Existing proxied
events are backfilled from ``detail`` (one UPDATE per database, no Python loop).

Revision ID: 0006_audit
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_audit"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FILTERED = (
    ("actor_user", "actor_user_id"),
    ("actor_email", "actor_email"),
    ("cluster", "cluster_id"),
    ("action", "action"),
    ("verb", "verb"),
    ("resource", "resource"),
    ("namespace", "namespace"),
    ("status", "status_code"),
)


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("verb", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("resource", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("subresource", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("namespace", sa.String(length=63), nullable=True))
        batch_op.add_column(sa.Column("status_code", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("source", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("user_agent", sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(sa.text("UPDATE audit_events SET recorded_at = created_at"))
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column(
            "recorded_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )
        batch_op.create_index(
            "ix_audit_events_org_recorded", ["org_id", "recorded_at", "id"], unique=False
        )
        batch_op.create_index("ix_audit_events_created_at", ["created_at"], unique=False)
        for name, column in _FILTERED:
            batch_op.create_index(
                f"ix_audit_events_org_{name}", ["org_id", column, "created_at"], unique=False
            )
    _backfill()


def _backfill() -> None:
    """Copy what old proxied events kept in ``detail`` into the new columns."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":

        def field(key: str) -> str:
            return f"NULLIF(detail::json->>'{key}', '')"

        status = "CAST(detail::json->>'status' AS INTEGER)"
    else:

        def field(key: str) -> str:
            return f"NULLIF(json_extract(detail, '$.{key}'), '')"

        status = "CAST(json_extract(detail, '$.status') AS INTEGER)"
    op.execute(
        sa.text(
            "UPDATE audit_events SET "
            f"verb = {field('verb')}, resource = {field('resource')}, "
            f"subresource = {field('subresource')}, namespace = {field('namespace')}, "
            f"status_code = {status} "
            "WHERE action = 'kube.request'"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        for name, _column in reversed(_FILTERED):
            batch_op.drop_index(f"ix_audit_events_org_{name}")
        batch_op.drop_index("ix_audit_events_created_at")
        batch_op.drop_index("ix_audit_events_org_recorded")
        batch_op.drop_column("recorded_at")
        batch_op.drop_column("user_agent")
        batch_op.drop_column("source")
        batch_op.drop_column("status_code")
        batch_op.drop_column("namespace")
        batch_op.drop_column("subresource")
        batch_op.drop_column("resource")
        batch_op.drop_column("verb")
