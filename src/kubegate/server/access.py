"""Cluster Access operations, written once for the REST API and the portal.

Both routers are thin: they authenticate their way (bearer token or session cookie plus CSRF
token) and hand the caller to a :class:`ClusterAccess`. The rules come from
``domain/access.py``; this module adds the database, transactions and the audit trail.

Every write runs in one transaction that also holds its audit event, so both land or neither
does; a refused attempt is audited in a transaction of its own (``failures_recorded``). A
cluster of another organisation answers 404, never 403, so its existence does not leak.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kubegate.domain.access import (
    SANDBOX_REFUSAL,
    ClusterKind,
    GrantStatus,
    Scope,
    can_see_grant,
    has_kubectl_access,
    parse_role,
    require_active_member,
    require_admin,
    require_cluster_access_supported,
)
from kubegate.errors import NotFound, ValidationFailed
from kubegate.gateway.registry import TunnelRegistry
from kubegate.server.audit import failures_recorded, record
from kubegate.server.deps import ApiCaller, Db, PortalCaller, State
from kubegate.server.grant_writes import (
    bump_revision,
    grant_detail,
    remove_every_grant,
    remove_grants,
)
from kubegate.server.kube_tokens import IssuedKubeconfig, Issuer, KubeTokenIssuer
from kubegate.server.pagination import PageRequest, encode_cursor, next_cursor, paginate
from kubegate.server.principal import Principal
from kubegate.server.routers.auth import user_out
from kubegate.server.routers.clusters import get_cluster
from kubegate.server.schemas import Page
from kubegate.server.schemas.access import (
    Capabilities,
    GrantCreate,
    GrantCreated,
    GrantOut,
    MemberRevoked,
    RevokeAllResult,
)
from kubegate.server.schemas.auth import UserOut
from kubegate.settings import Settings
from kubegate.storage.models import Cluster, Grant, Membership, User, utcnow


def grant_out(grant: Grant, email: str) -> GrantOut:
    """The API shape of a grant, with its user's email."""
    return GrantOut(
        id=grant.id,
        cluster_id=grant.cluster_id,
        user_id=grant.user_id,
        user_email=email,
        role=grant.role,
        scope=grant.scope,
        namespace=grant.namespace,
        status=grant.status,
        status_detail=grant.status_detail,
        created_by=grant.created_by,
        created_at=grant.created_at,
        updated_at=grant.updated_at,
    )


class ClusterAccess:
    """Grants on one organisation's clusters, as seen and changed by one caller.

    Built per request from the caller, the request's database session, the session factory
    (for auditing refused attempts apart from the rolled-back transaction), the settings, the
    connected agents and the kube token issuer.
    """

    def __init__(
        self,
        db: AsyncSession,
        sessions: async_sessionmaker[Any],
        settings: Settings,
        caller: Principal,
        tunnels: TunnelRegistry,
        issuer: KubeTokenIssuer,
    ) -> None:
        self.db = db
        self.sessions = sessions
        self.settings = settings
        self.caller = caller
        self.tunnels = tunnels
        self.issuer = issuer

    async def _cluster(self, cluster_id: str) -> Cluster:
        """The caller's organisation's cluster (404 otherwise)."""
        return await get_cluster(self.db, self.caller.actor, cluster_id)

    async def _supported_cluster(self, cluster_id: str, *, manage: str | None = None) -> Cluster:
        """The cluster, checked in order: exists in the caller's org (404), the caller may
        ``manage`` when that action is named (403), Cluster Access is supported (409)."""
        cluster = await self._cluster(cluster_id)
        if manage is not None:
            require_admin(self.caller.actor, manage)
        require_cluster_access_supported(ClusterKind(cluster.kind))
        return cluster

    async def capabilities(self, cluster_id: str) -> Capabilities:
        """Whether Cluster Access is on for the cluster, whether the caller can manage it and
        whether they hold a grant on it (admins without a grant have no access).

        A sandbox cluster answers ``enabled`` false with the reason rather than 409, so the
        portal can say why. (With the gateway disabled the endpoint itself is 404.)
        """
        cluster = await self._cluster(cluster_id)
        actor = self.caller.actor
        if ClusterKind(cluster.kind) is ClusterKind.SANDBOX:
            return Capabilities(
                enabled=False, can_manage=False, has_access=False, reason=SANDBOX_REFUSAL
            )
        own_grants = await self.db.scalar(
            select(func.count())
            .select_from(Grant)
            .where(Grant.cluster_id == cluster.id, Grant.user_id == actor.user_id)
        )
        return Capabilities(
            enabled=True,
            can_manage=actor.is_admin,
            has_access=has_kubectl_access(own_grants or 0),
        )

    async def members(self, cluster_id: str, page: PageRequest) -> Page[UserOut]:
        """The organisation's members a grant on this cluster can target (admins only).

        Deactivated members are listed too, with ``is_active`` false, so the portal can say
        why they cannot be chosen.
        """
        cluster = await self._supported_cluster(cluster_id, manage="list members for grants")
        # paginate() takes a single-entity select; the user joins the page afterwards.
        page_query = paginate(
            select(Membership).where(Membership.org_id == cluster.org_id),
            page,
            Membership.created_at,
            Membership.user_id,
        )
        result = await self.db.execute(
            page_query.join(User, User.id == Membership.user_id).add_columns(User)
        )
        rows: list[tuple[Membership, User]] = [(m, u) for m, u in result]
        cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            last = rows[-1][0]
            cursor = encode_cursor(last.created_at, last.user_id)
        items = [user_out(user, membership) for membership, user in rows]
        return Page[UserOut](items=items, next_cursor=cursor)

    async def grants(self, cluster_id: str, page: PageRequest) -> Page[GrantOut]:
        """The cluster's grants with their status: all of them for admins, a member's own
        for a member."""
        cluster = await self._supported_cluster(cluster_id)
        actor = self.caller.actor
        query = select(Grant).where(Grant.cluster_id == cluster.id)
        if not actor.is_admin:
            query = query.where(Grant.user_id == actor.user_id)
        # paginate() takes a single-entity select; the user's email joins the page afterwards.
        result = await self.db.execute(
            paginate(query, page, Grant.created_at, Grant.id)
            .join(User, User.id == Grant.user_id)
            .add_columns(User.email)
        )
        rows: list[tuple[Grant, str]] = [(g, e) for g, e in result]
        emails = {grant.id: email for grant, email in rows}
        grants, cursor = next_cursor([grant for grant, _ in rows], page)
        items = [grant_out(g, emails[g.id]) for g in grants if can_see_grant(actor, g.user_id)]
        return Page[GrantOut](items=items, next_cursor=cursor)

    async def _target(self, cluster: Cluster, body: GrantCreate) -> User:
        """The grant's target user: given by id or email, an active member of the org."""
        if (body.user_id is None) == (body.email is None):
            raise ValidationFailed(
                "name the user to grant access to with either user_id or email (exactly one)",
                details={"field": "user"},
            )
        if body.user_id is not None:
            who = f"user {body.user_id}"
            where = User.id == body.user_id
        else:
            assert body.email is not None
            who = body.email.strip().lower()
            where = User.email == who
        row = (
            await self.db.execute(
                select(User, Membership.is_active)
                .join(
                    Membership,
                    (Membership.user_id == User.id) & (Membership.org_id == cluster.org_id),
                )
                .where(where)
            )
        ).first()
        # Unknown users and other organisations' users get the same answer: whether someone
        # exists outside the caller's organisation stays unknown.
        user = row[0] if row else None
        require_active_member(user is not None, bool(row and row[1]), who)
        assert user is not None
        return user

    async def create_grant(self, cluster_id: str, body: GrantCreate) -> GrantCreated:
        """Create a grant (admins only): ``pending`` until the agent applies it, or
        ``cluster_offline`` while no agent is connected; the agent hears of it at once.

        Creating a grant that already exists answers the existing one (``created`` False),
        also when an identical request wins a race with this one.
        """
        fields = {"target_type": "cluster", "target_id": cluster_id, "cluster_id": cluster_id}
        async with failures_recorded(self.sessions, self.caller, "grant.create", **fields):
            try:
                async with self.db.begin():
                    created = await self._create_grant(cluster_id, body)
            except IntegrityError:
                # An identical grant was committed between our check and our insert (or the
                # user or cluster went away): decide again, on what is there now.
                async with self.db.begin():
                    created = await self._create_grant(cluster_id, body)
        if created.created:
            self.tunnels.desired_changed(cluster_id)
        return created

    async def _create_grant(self, cluster_id: str, body: GrantCreate) -> GrantCreated:
        cluster = await self._supported_cluster(cluster_id, manage="grant cluster access")
        role = parse_role(body.role)
        scope = Scope.parse(body.scope_kind, body.namespace)
        user = await self._target(cluster, body)
        existing = await self.db.scalar(
            select(Grant).where(
                Grant.cluster_id == cluster.id,
                Grant.user_id == user.id,
                Grant.role == role.value,
                Grant.scope_key == scope.key,
            )
        )
        if existing is not None:
            record(
                self.db,
                self.caller,
                "grant.create",
                target_type="grant",
                target_id=existing.id,
                cluster_id=cluster.id,
                detail={**grant_detail(existing, user.email), "already_existed": True},
            )
            return GrantCreated(grant_out(existing, user.email), created=False)
        now = utcnow()
        online = self.tunnels.is_online(cluster.id)
        grant = Grant(
            cluster_id=cluster.id,
            user_id=user.id,
            role=role.value,
            scope=scope.kind.value,
            namespace=scope.namespace,
            scope_key=scope.key,
            status=(GrantStatus.PENDING if online else GrantStatus.CLUSTER_OFFLINE).value,
            status_detail="" if online else "the cluster's agent is not connected",
            created_by=self.caller.actor.user_id,
            created_at=now,
            updated_at=now,
        )
        self.db.add(grant)
        await self.db.flush()
        await bump_revision(self.db, cluster.id)
        record(
            self.db,
            self.caller,
            "grant.create",
            target_type="grant",
            target_id=grant.id,
            cluster_id=cluster.id,
            detail=grant_detail(grant, user.email),
        )
        return GrantCreated(grant_out(grant, user.email), created=True)

    async def delete_grant(self, cluster_id: str, grant_id: str) -> None:
        """Delete one grant of the cluster (admins only); 404 if the cluster has no such
        grant."""
        fields = {"target_type": "grant", "target_id": grant_id, "cluster_id": cluster_id}
        async with (
            failures_recorded(self.sessions, self.caller, "grant.delete", **fields),
            self.db.begin(),
        ):
            cluster = await self._supported_cluster(cluster_id, manage="delete grants")
            row = (
                await self.db.execute(
                    select(Grant, User.email)
                    .join(User, User.id == Grant.user_id)
                    .where(Grant.id == grant_id, Grant.cluster_id == cluster.id)
                )
            ).first()
            grants, email = ([row[0]], row[1]) if row is not None else ([], "")
            if not await remove_grants(self.db, self.caller, cluster.id, grants, email):
                raise NotFound(f"grant {grant_id[:64]} not found on cluster {cluster_id}")
        self.tunnels.desired_changed(cluster_id)

    async def revoke_member(self, cluster_id: str, email: str) -> MemberRevoked:
        """Delete every grant the member with ``email`` holds on the cluster (admins only),
        each exactly as :meth:`delete_grant` does; 404 if no member of the organisation has
        that email. Deactivated members count: their grants can go too."""
        fields = {"target_type": "cluster", "target_id": cluster_id, "cluster_id": cluster_id}
        async with (
            failures_recorded(self.sessions, self.caller, "grant.delete", **fields),
            self.db.begin(),
        ):
            cluster = await self._supported_cluster(cluster_id, manage="revoke cluster access")
            user_id = await self.db.scalar(
                select(User.id)
                .join(
                    Membership,
                    (Membership.user_id == User.id) & (Membership.org_id == cluster.org_id),
                )
                .where(User.email == email)
            )
            if user_id is None:
                raise NotFound(f"{email} is not a member of this organisation")
            grants = await self.db.scalars(
                select(Grant)
                .where(Grant.cluster_id == cluster.id, Grant.user_id == user_id)
                .order_by(Grant.created_at, Grant.id)
            )
            removed = await remove_grants(
                self.db, self.caller, cluster.id, list(grants), email, via="revoke"
            )
        if removed:
            self.tunnels.desired_changed(cluster_id)
        return MemberRevoked(revoked=removed)

    async def revoke_all(self, cluster_id: str) -> RevokeAllResult:
        """Delete every grant of the cluster and bump its token epoch, in one transaction,
        so every kube token minted for it stops working (admins only)."""
        fields = {"target_type": "cluster", "target_id": cluster_id, "cluster_id": cluster_id}
        async with (
            failures_recorded(self.sessions, self.caller, "grant.revoke_all", **fields),
            self.db.begin(),
        ):
            cluster = await self._supported_cluster(cluster_id, manage="revoke cluster access")
            removed, epoch = await remove_every_grant(self.db, self.caller, cluster.id)
        self.tunnels.desired_changed(cluster_id)
        return RevokeAllResult(grants_removed=len(removed), token_epoch=epoch)

    async def kubeconfig(self, cluster_id: str) -> IssuedKubeconfig:
        """A complete kubeconfig for the cluster with a freshly minted kube token (the checks
        and rate limit of :meth:`KubeTokenIssuer.mint`)."""
        return await self.issuer.kubeconfig(self.caller, cluster_id)


async def api_cluster_access(
    caller: ApiCaller, db: Db, state: State, issuer: Issuer
) -> ClusterAccess:
    """FastAPI dependency: Cluster Access for a bearer-token caller."""
    return ClusterAccess(db, state.sessions, state.settings, caller, state.tunnels, issuer)


async def portal_cluster_access(
    caller: PortalCaller, db: Db, state: State, issuer: Issuer
) -> ClusterAccess:
    """FastAPI dependency: Cluster Access for a portal session (writes checked for CSRF)."""
    return ClusterAccess(db, state.sessions, state.settings, caller, state.tunnels, issuer)


ApiAccess = Annotated[ClusterAccess, Depends(api_cluster_access)]
PortalAccess = Annotated[ClusterAccess, Depends(portal_cluster_access)]
