"""Who a kube token belongs to, and whether they may still reach the cluster: from memory.

The proxy's hot path never waits for the database: a token is looked up once (by its
SHA-256) and then answered from :class:`Authority`'s cache, as is each cluster's token epoch
and the set of users holding a grant on it. What changes those answers invalidates them at
once: a grant change or revoke-all (``cluster_changed``), a member's deactivation
(``user_changed``). Every open long-lived exchange (watch, exec, port-forward) is registered
under its identity, and revocation cancels it.

Expiry is checked on every request but never cuts an open stream (kube-apiserver behaves
the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker

from kubegate.auth.hashing import secret_hash
from kubegate.errors import KubegateError, PermissionDenied, Unauthenticated, Unavailable
from kubegate.proxy.scope import AccessScope
from kubegate.storage.models import Cluster, Grant, KubeToken, Membership, User

log = logging.getLogger(__name__)

NO_ACCESS = "You do not have access to this cluster"
# Tokens kept in memory at most; the least recently used go first (they reload on use).
MAX_TOKENS = 100_000
# An unknown token is remembered this long, so a flood of bad tokens is not a flood of
# database queries.
NEGATIVE_TTL = 10.0
MAX_NEGATIVE = 10_000


class DatabaseUnavailable(Unavailable):
    """The database did not answer while loading a token or a cluster."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A kube token's owner and bounds, as the proxy needs them per request."""

    token_id: str
    user_id: str
    email: str
    org_id: str
    cluster_id: str
    epoch: int
    expires_at: float  # unix time
    access_key_id: str | None
    scope: AccessScope | None

    @property
    def key(self) -> tuple[str, str | None]:
        """What limits and revocation count by: the person, or one of their access keys."""
        return (self.user_id, self.access_key_id)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the proxy must know about a cluster: its name, epoch and who holds a grant."""

    cluster_id: str
    name: str
    kind: str
    epoch: int
    granted: frozenset[str]  # user ids with at least one grant


Cancel = Callable[[str], None]


@dataclass(eq=False)
class Exchange:
    """An open long-lived exchange, cancellable by revocation with a reason."""

    identity: Identity
    cancel: Cancel
    kind: str


@dataclass
class _Registry:
    by_cluster_user: dict[tuple[str, str], set[Exchange]] = field(default_factory=dict)

    def add(self, exchange: Exchange) -> None:
        key = (exchange.identity.cluster_id, exchange.identity.user_id)
        self.by_cluster_user.setdefault(key, set()).add(exchange)

    def remove(self, exchange: Exchange) -> None:
        key = (exchange.identity.cluster_id, exchange.identity.user_id)
        group = self.by_cluster_user.get(key)
        if group is not None:
            group.discard(exchange)
            if not group:
                del self.by_cluster_user[key]

    def matching(self, predicate: Callable[[Exchange], bool]) -> list[Exchange]:
        return [x for group in self.by_cluster_user.values() for x in group if predicate(x)]


class Authority:
    """Authentication and standing authorisation for the proxy, cached, with revocation."""

    def __init__(
        self,
        sessions: async_sessionmaker[Any],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._monotonic = monotonic
        self._tokens: OrderedDict[str, Identity] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._clusters: dict[str, ClusterView | None] = {}
        self._loading: dict[str, asyncio.Future[ClusterView | None]] = {}
        self._generation: dict[str, int] = {}
        self._exchanges = _Registry()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- per request -----------------------------------------------------------------

    async def authorize(self, token: str, cluster_id: str) -> tuple[Identity, ClusterView]:
        """The token's identity, checked against ``cluster_id``: raises 401 for a bad,
        expired, revoked or other-cluster token, 403 without a grant, 404 for no cluster."""
        token_hash = secret_hash(token)
        identity = self._tokens.get(token_hash)
        if identity is None:
            identity = await self._load_token(token_hash)
        else:
            self._tokens.move_to_end(token_hash)
        if identity.cluster_id != cluster_id:
            raise Unauthenticated("this kube token was minted for another cluster")
        if identity.expires_at <= self._clock():
            raise Unauthenticated("the kube token has expired; get a new one")
        view = self._clusters.get(cluster_id)
        if view is None:
            view = await self._cluster(cluster_id)
        if view is None:
            self._forget_token(token_hash)
            raise Unauthenticated("the kube token's cluster no longer exists")
        if identity.epoch != view.epoch:
            raise Unauthenticated("the kube token was revoked (revoke-all); get a new one")
        if identity.user_id not in view.granted:
            raise PermissionDenied(NO_ACCESS)
        if identity.scope is not None and not identity.scope.allows_cluster(cluster_id):
            raise PermissionDenied(NO_ACCESS)
        return identity, view

    async def _load_token(self, token_hash: str) -> Identity:
        seen = self._unknown.get(token_hash)
        now = self._monotonic()
        if seen is not None and now - seen < NEGATIVE_TTL:
            raise Unauthenticated("unknown kube token")
        try:
            async with self._sessions() as session:
                row = (
                    await session.execute(
                        select(KubeToken, User.email, Membership.is_active)
                        .join(User, User.id == KubeToken.user_id)
                        .join(
                            Membership,
                            (Membership.user_id == KubeToken.user_id)
                            & (Membership.org_id == KubeToken.org_id),
                        )
                        .where(KubeToken.token_hash == token_hash)
                    )
                ).first()
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                "kubegate cannot check the token right now (database unavailable); retry"
            ) from exc
        if row is None or not row[2]:
            self._unknown[token_hash] = now
            self._unknown.move_to_end(token_hash)
            while len(self._unknown) > MAX_NEGATIVE:
                self._unknown.popitem(last=False)
            raise Unauthenticated("unknown kube token")
        token, email, _active = row
        identity = Identity(
            token_id=token.id,
            user_id=token.user_id,
            email=email,
            org_id=token.org_id,
            cluster_id=token.cluster_id,
            epoch=token.token_epoch,
            expires_at=_unix(token.expires_at),
            access_key_id=token.access_key_id,
            scope=AccessScope.from_json(token.scope),
        )
        self._tokens[token_hash] = identity
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)
        return identity

    async def _cluster(self, cluster_id: str) -> ClusterView | None:
        """The cluster's view, loaded once however many requests ask at the same time."""
        pending = self._loading.get(cluster_id)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[cluster_id] = pending
            generation = self._generation.get(cluster_id, 0)
            try:
                view = await self._load_cluster(cluster_id)
            except KubegateError as exc:
                pending.set_exception(exc)
                pending.exception()
                raise
            finally:
                self._loading.pop(cluster_id, None)
            # A change that arrived while we loaded makes what we read stale: keep it for
            # this request only, and let the next load again.
            if self._generation.get(cluster_id, 0) == generation:
                self._clusters[cluster_id] = view
            pending.set_result(view)
            return view
        return await asyncio.shield(pending)

    async def _load_cluster(self, cluster_id: str) -> ClusterView | None:
        try:
            async with self._sessions() as session:
                cluster = await session.get(Cluster, cluster_id)
                if cluster is None:
                    return None
                users = await session.scalars(
                    select(Grant.user_id).where(Grant.cluster_id == cluster_id).distinct()
                )
                return ClusterView(
                    cluster_id=cluster.id,
                    name=cluster.name,
                    kind=cluster.kind,
                    epoch=cluster.token_epoch,
                    granted=frozenset(users),
                )
        except SQLAlchemyError as exc:
            raise DatabaseUnavailable(
                "kubegate cannot check access right now (database unavailable); retry"
            ) from exc

    # -- long-lived exchanges ----------------------------------------------------------

    @contextlib.contextmanager
    def registered(self, identity: Identity, kind: str, cancel: Cancel) -> Iterator[Exchange]:
        """Keep an open exchange cancellable by revocation while the block runs."""
        exchange = Exchange(identity, cancel, kind)
        self._exchanges.add(exchange)
        try:
            yield exchange
        finally:
            self._exchanges.remove(exchange)

    def open_exchanges(self, cluster_id: str | None = None) -> int:
        """How many long-lived exchanges are open (on one cluster, or in all)."""
        return len(
            self._exchanges.matching(
                lambda x: cluster_id is None or x.identity.cluster_id == cluster_id
            )
        )

    # -- invalidation ------------------------------------------------------------------

    def cluster_changed(self, cluster_id: str) -> None:
        """A cluster's grants or epoch changed (committed): reload what we know of it, then
        cancel the open exchanges of whoever lost access."""
        self._generation[cluster_id] = self._generation.get(cluster_id, 0) + 1
        self._clusters.pop(cluster_id, None)
        task = asyncio.get_running_loop().create_task(self._recheck(cluster_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recheck(self, cluster_id: str) -> None:
        try:
            view = await self._cluster(cluster_id)
        except KubegateError:
            # The database is down: nothing can be confirmed, so nothing stays open.
            log.warning("cannot reload cluster access; closing its open streams")
            view = None
        for exchange in self._exchanges.matching(lambda x: x.identity.cluster_id == cluster_id):
            reason = _lost_access(exchange.identity, view)
            if reason is not None:
                exchange.cancel(reason)
        if view is None:
            for token_hash in [h for h, i in self._tokens.items() if i.cluster_id == cluster_id]:
                self._forget_token(token_hash)

    def user_changed(self, user_id: str) -> None:
        """A user was deactivated or removed: forget their tokens and close their streams."""
        for token_hash in [h for h, i in self._tokens.items() if i.user_id == user_id]:
            self._forget_token(token_hash)
        for exchange in self._exchanges.matching(lambda x: x.identity.user_id == user_id):
            exchange.cancel("the user's access was withdrawn")

    def access_key_deleted(self, access_key_id: str) -> None:
        """An access key was deleted: its tokens stop working and its streams close."""
        for token_hash in [h for h, i in self._tokens.items() if i.access_key_id == access_key_id]:
            self._forget_token(token_hash)
        for exchange in self._exchanges.matching(
            lambda x: x.identity.access_key_id == access_key_id
        ):
            exchange.cancel("the access key was deleted")

    def _forget_token(self, token_hash: str) -> None:
        self._tokens.pop(token_hash, None)
        # Deleted from the database too (or about to be): a reload must not find it live.
        self._unknown[token_hash] = self._monotonic()

    async def settled(self) -> None:
        """Wait until every re-check started by an invalidation has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _lost_access(identity: Identity, view: ClusterView | None) -> str | None:
    if view is None:
        return "the cluster is gone or its access cannot be confirmed"
    if identity.epoch != view.epoch:
        return "all access to the cluster was revoked"
    if identity.user_id not in view.granted:
        return "the user's last grant on the cluster was deleted"
    return None


def _unix(moment: dt.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
