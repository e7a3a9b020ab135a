"""Registering a cluster: the one operation the REST API and the portal's page share.

A cluster is a row with the hash of a new agent credential (``kg_agent_…``); the credential
itself is answered once, to the admin who registered it, and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kubegate.auth.hashing import new_secret, secret_hash
from kubegate.domain.access import ClusterKind, dns1123_label_problem, require_admin
from kubegate.errors import Conflict, ValidationFailed
from kubegate.server.audit import failures_recorded, record
from kubegate.server.principal import Principal
from kubegate.storage.models import Cluster

AGENT_CREDENTIAL_PREFIX = "kg_agent"


@dataclass(frozen=True, slots=True)
class Registered:
    """A cluster just registered, and its agent credential (the only time it is known)."""

    cluster: Cluster
    agent_credential: str


def cluster_kind(value: str) -> ClusterKind:
    """``standard`` or ``sandbox``, else 422 naming both."""
    try:
        return ClusterKind(value)
    except ValueError:
        raise ValidationFailed(
            f"kind must be 'standard' or 'sandbox', not {value[:64]!r}", details={"field": "kind"}
        ) from None


async def register_cluster(
    db: AsyncSession, sessions: async_sessionmaker[Any], caller: Principal, name: str, kind: str
) -> Registered:
    """Register cluster ``name`` in the caller's organisation (admins only, 403; a DNS-1123
    label, 422; unique in the organisation, 409), audited as ``cluster.register`` — a
    refusal too."""
    async with failures_recorded(sessions, caller, "cluster.register"):
        require_admin(caller.actor, "register clusters")
        problem = dns1123_label_problem(name)
        if problem:
            raise ValidationFailed(
                f"cluster name {name[:80]!r} {problem}", details={"field": "name"}
            )
        checked = cluster_kind(kind)
        credential = new_secret(AGENT_CREDENTIAL_PREFIX)
        async with db.begin():
            cluster = Cluster(
                org_id=caller.actor.org_id,
                name=name,
                kind=checked.value,
                agent_credential_hash=secret_hash(credential),
            )
            db.add(cluster)
            try:
                await db.flush()
            except IntegrityError as exc:
                raise Conflict(
                    f"a cluster named {name!r} already exists in this organisation",
                    details={"field": "name"},
                ) from exc
            record(
                db,
                caller,
                "cluster.register",
                target_type="cluster",
                target_id=cluster.id,
                cluster_id=cluster.id,
                detail={"name": cluster.name, "kind": cluster.kind},
            )
    return Registered(cluster, credential)
