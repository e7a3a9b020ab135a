"""The database behind the gateway: :class:`kubegate.gateway.store.GatewayStore` on SQLAlchemy.

The gateway asks; this answers from the database, translating SQLAlchemy's errors into
:class:`DatabaseUnavailable` (503) where they enter, so nothing above knows what a
database error looks like.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker

from kubegate.domain.scope import AccessScope
from kubegate.errors import KubegateError, Unavailable, map_exceptions
from kubegate.gateway.store import AuditRecord, ClusterView, Identity
from kubegate.server import rbac_sync
from kubegate.storage.engine import RoundTrips
from kubegate.storage.models import (
    AuditEvent,
    Cluster,
    Grant,
    KubeToken,
    Membership,
    ServiceAccount,
    User,
    new_id,
    utcnow,
)
from kubegate.tunnel.control import Desired, GrantResult, ServiceAccountResult

AUDIT_ACTION = "kube.request"

_DATABASE: dict[type[BaseException], type[KubegateError]] = {SQLAlchemyError: Unavailable}


class DatabaseUnavailable(Unavailable):
    """The database did not answer while loading a token or a cluster."""


class SqlGatewayStore:
    """The gateway's questions (token, cluster, audit, agent state) asked of the database."""

    def __init__(self, sessions: async_sessionmaker[Any], trips: RoundTrips) -> None:
        self._sessions = sessions
        self._trips = trips

    # -- AccessStore ---------------------------------------------------------------------

    async def load_token(self, token_hash: str) -> Identity | None:
        try:
            async with self._sessions() as session:
                row = (
                    await session.execute(
                        select(
                            KubeToken,
                            User.email,
                            Membership.is_active,
                            ServiceAccount.namespace,
                            ServiceAccount.name,
                        )
                        .join(User, User.id == KubeToken.user_id)
                        .join(
                            Membership,
                            (Membership.user_id == KubeToken.user_id)
                            & (Membership.org_id == KubeToken.org_id),
                        )
                        .outerjoin(
                            ServiceAccount, ServiceAccount.id == KubeToken.service_account_id
                        )
                        .where(KubeToken.token_hash == token_hash)
                    )
                ).first()
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                "kubegate cannot check the token right now (database unavailable); retry"
            ) from exc
        if row is None:
            return None
        token, email, active, sa_namespace, sa_name = row
        account = None
        if token.service_account_id is not None:
            # The account acts, not the admin who issued its token: their leaving does not
            # end CI's access (deleting the account does, and revoke-all).
            if sa_namespace is None or sa_name is None:
                return None
            account = (sa_namespace, sa_name)
            email = f"system:serviceaccount:{sa_namespace}:{sa_name}"
        elif not active:
            return None
        return Identity(
            token_id=token.id,
            user_id=token.user_id,
            email=email,
            org_id=token.org_id,
            cluster_id=token.cluster_id,
            epoch=token.token_epoch,
            expires_at=_unix(token.expires_at),
            access_key_id=token.access_key_id,
            scope=AccessScope.from_json(token.scope),
            service_account_id=token.service_account_id,
            service_account=account,
        )

    async def load_cluster(self, cluster_id: str) -> ClusterView | None:
        try:
            async with self._sessions() as session:
                cluster = await session.get(Cluster, cluster_id)
                if cluster is None:
                    return None
                users = await session.scalars(
                    select(Grant.user_id).where(Grant.cluster_id == cluster_id).distinct()
                )
                granted = frozenset(users)
                accounts = await session.scalars(
                    select(ServiceAccount.id).where(ServiceAccount.cluster_id == cluster_id)
                )
                return ClusterView(
                    cluster_id=cluster.id,
                    name=cluster.name,
                    kind=cluster.kind,
                    epoch=cluster.token_epoch,
                    granted=granted,
                    service_accounts=frozenset(accounts),
                )
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                "kubegate cannot check access right now (database unavailable); retry"
            ) from exc

    # -- AuditStore ----------------------------------------------------------------------

    async def write_audit(self, records: Sequence[AuditRecord]) -> None:
        rows = [
            {
                "id": new_id(),
                "org_id": r.org_id,
                "actor_user_id": r.user_id,
                "actor_email": r.email,
                "action": AUDIT_ACTION,
                "target_type": "kube",
                "target_id": r.resource[:64],
                "cluster_id": r.cluster_id,
                "result": "success" if r.status < 400 else "failure",
                "detail": {**r.detail, "status": r.status},
                "created_at": r.created_at,
                "verb": r.verb,
                "resource": r.resource[:128] or None,
                "subresource": r.subresource,
                "namespace": r.namespace,
                "status_code": r.status,
                "source": r.source,
                "user_agent": r.user_agent,
            }
            for r in records
        ]
        with map_exceptions(_DATABASE, prefix="cannot write proxy audit events: "):
            await self._trips.run(_insert_audit, rows)

    # -- AgentStore ----------------------------------------------------------------------

    async def mark_online(self, cluster_id: str, info: Mapping[str, str]) -> None:
        with map_exceptions(_DATABASE, prefix="cannot record the agent's connect: "):
            await rbac_sync.mark_online(self._sessions, cluster_id, info)

    async def mark_seen(self, cluster_id: str) -> None:
        with map_exceptions(_DATABASE, prefix="cannot record the agent as seen: "):
            await rbac_sync.mark_seen(self._sessions, cluster_id)

    async def mark_offline(self, cluster_id: str) -> None:
        with map_exceptions(_DATABASE, prefix="cannot record the agent's disconnect: "):
            await rbac_sync.mark_offline(self._sessions, cluster_id)

    async def load_desired(self, cluster_id: str) -> Desired:
        with map_exceptions(_DATABASE, prefix="cannot load the desired RBAC: "):
            return await rbac_sync.load_desired(self._sessions, cluster_id)

    async def record_results(
        self,
        cluster_id: str,
        results: Sequence[GrantResult],
        service_accounts: Sequence[ServiceAccountResult],
    ) -> int:
        with map_exceptions(_DATABASE, prefix="cannot record the agent's results: "):
            return await rbac_sync.record_results(
                self._sessions, cluster_id, results, service_accounts
            )


def _insert_audit(connection: Connection, rows: list[dict[str, Any]]) -> None:
    # Stamped at the insert, not when the batch was made: a follower reads in recorded_at
    # order and trusts every row stamped before its horizon to be committed (audit_query.py).
    # A microsecond apart, in the queue's order, so that order is the order they happened.
    recorded_at = utcnow()
    stamped = [
        {**row, "recorded_at": recorded_at + dt.timedelta(microseconds=index)}
        for index, row in enumerate(rows)
    ]
    connection.execute(insert(AuditEvent), stamped)
    connection.commit()


def _unix(moment: dt.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
