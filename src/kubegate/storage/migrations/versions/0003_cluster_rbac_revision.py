"""A cluster's desired-RBAC revision.

Every grant change on a cluster bumps ``clusters.rbac_revision`` in the same transaction; the
server sends the agent the full desired set with that revision, and the agent ignores a set
older than the one it has.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(
            sa.Column("rbac_revision", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("rbac_revision")
