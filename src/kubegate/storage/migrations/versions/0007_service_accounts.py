"""Service accounts for automation and the direct apiserver address of each cluster.

- ``service_accounts``: Kubernetes ServiceAccounts kubegate manages, one role each, with a
  status like grants'.
- ``kube_tokens.service_account_id``: a kube token that acts as such an account (its
  kubeconfig through the gateway); deleted with the account.
- ``clusters`` gains the apiserver URL and CA for kubeconfigs that bypass the gateway: the
  operator's (``api_server_url``, ``api_server_ca``) and what the agent reported
  (``agent_api_server_url``, ``agent_api_server_ca``), and the agent's namespace.

Revision ID: 0007
Revises: 0006_audit
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_accounts",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("cluster_id", sa.String(length=32), nullable=False),
        sa.Column("namespace", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_detail", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_service_accounts_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_service_accounts_cluster_id_clusters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_service_accounts_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_accounts")),
        sa.UniqueConstraint(
            "cluster_id",
            "namespace",
            "name",
            name=op.f("uq_service_accounts_cluster_id_namespace_name"),
        ),
    )
    with op.batch_alter_table("service_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_accounts_cluster_id"), ["cluster_id"], unique=False
        )
    with op.batch_alter_table("kube_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("service_account_id", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_kube_tokens_service_account_id"), ["service_account_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_kube_tokens_service_account_id_service_accounts"),
            "service_accounts",
            ["service_account_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("api_server_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("api_server_ca", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("agent_api_server_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("agent_api_server_ca", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("agent_namespace", sa.String(length=63), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clusters", schema=None) as batch_op:
        for column in (
            "agent_namespace",
            "agent_api_server_ca",
            "agent_api_server_url",
            "api_server_ca",
            "api_server_url",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("kube_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_kube_tokens_service_account_id_service_accounts"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_kube_tokens_service_account_id"))
        batch_op.drop_column("service_account_id")
    with op.batch_alter_table("service_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_accounts_cluster_id"))
    op.drop_table("service_accounts")
