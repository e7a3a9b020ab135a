"""Deactivation is per membership, not per user.

A user may belong to several organisations; an admin of one must not be able to lock them out
of another. ``users.is_active`` moves to ``memberships.is_active`` (each membership takes its
user's old value).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("memberships") as batch:
        batch.add_column(
            sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.execute(
        "UPDATE memberships SET is_active = "
        "(SELECT users.is_active FROM users WHERE users.id = memberships.user_id)"
    )
    with op.batch_alter_table("users") as batch:
        batch.drop_column("is_active")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    # A user stays active if any of their memberships is.
    op.execute(
        "UPDATE users SET is_active = EXISTS (SELECT 1 FROM memberships m "
        "WHERE m.user_id = users.id AND m.is_active)"
    )
    with op.batch_alter_table("memberships") as batch:
        batch.drop_column("is_active")
