"""Kube tokens: short-lived bearer tokens for the Kubernetes API proxy.

Only each token's SHA-256 is stored, with who it is for (user, organisation, cluster), the
cluster's token epoch when it was minted (revoke-all bumps the epoch, voiding older tokens),
the access key and scope it was minted with (access keys arrive later) and its expiry.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kube_tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("token_epoch", sa.Integer(), nullable=False),
        sa.Column("access_key_id", sa.String(length=32), nullable=True),
        sa.Column("scope", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_kube_tokens_cluster_id_clusters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_kube_tokens_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_kube_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kube_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_kube_tokens_token_hash")),
    )
    with op.batch_alter_table("kube_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_kube_tokens_access_key_id"), ["access_key_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_kube_tokens_cluster_id"), ["cluster_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_kube_tokens_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_kube_tokens_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("kube_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kube_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_kube_tokens_expires_at"))
        batch_op.drop_index(batch_op.f("ix_kube_tokens_cluster_id"))
        batch_op.drop_index(batch_op.f("ix_kube_tokens_access_key_id"))

    op.drop_table("kube_tokens")
