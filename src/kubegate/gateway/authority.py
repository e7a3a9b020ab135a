"""Who a kube token belongs to, and whether they may still reach the cluster: from memory.

The proxy's hot path never waits for the database: a token is looked up once (by its
SHA-256) and then answered from :class:`Authority`'s cache, as is each cluster's token epoch
and the set of users holding a grant on it. What changes those answers invalidates them at
once: a grant change or revoke-all (``cluster_changed``), a member's deactivation
(``user_changed``), a sign-out everywhere (``person_signed_out``), a deleted access key
(``access_key_deleted``). Every open long-lived exchange (watch, exec, port-forward) is registered
under its identity, and revocation cancels it.

Expiry is checked on every request but never cuts an open stream (kube-apiserver behaves
the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from kubegate.auth.hashing import secret_hash
from kubegate.domain.access import NO_ACCESS
from kubegate.errors import KubegateError, PermissionDenied, Unauthenticated
from kubegate.gateway.store import AccessStore, ClusterView, Identity

log = logging.getLogger(__name__)

# Tokens kept in memory at most; the least recently used go first (they reload on use).
MAX_TOKENS = 100_000
# An unknown token is remembered this long, so a flood of bad tokens is not a flood of
# database queries.
NEGATIVE_TTL = 10.0
MAX_NEGATIVE = 10_000


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
        store: AccessStore,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._monotonic = monotonic
        self._tokens: OrderedDict[str, Identity] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._clusters: dict[str, ClusterView | None] = {}
        self._loading: dict[str, asyncio.Task[ClusterView | None]] = {}
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
        if identity.service_account_id is not None:
            if identity.service_account_id not in view.service_accounts:
                raise Unauthenticated("the kube token's service account was deleted from kubegate")
        elif identity.user_id not in view.granted:
            raise PermissionDenied(NO_ACCESS)
        if identity.scope is not None and not identity.scope.allows_cluster(cluster_id):
            raise PermissionDenied(NO_ACCESS)
        return identity, view

    async def _load_token(self, token_hash: str) -> Identity:
        seen = self._unknown.get(token_hash)
        now = self._monotonic()
        if seen is not None and now - seen < NEGATIVE_TTL:
            raise Unauthenticated("unknown kube token")
        identity = await self._store.load_token(token_hash)
        if identity is None:
            self._unknown[token_hash] = now
            self._unknown.move_to_end(token_hash)
            while len(self._unknown) > MAX_NEGATIVE:
                self._unknown.popitem(last=False)
            raise Unauthenticated("unknown kube token")
        self._tokens[token_hash] = identity
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)
        return identity

    async def _cluster(self, cluster_id: str) -> ClusterView | None:
        """The cluster's view, loaded once however many requests ask at the same time.

        The load is a task of its own, so whatever happens to the request that started it
        (cancelled because kubectl went away, say) every waiter gets its answer or its error.
        """
        task = self._loading.get(cluster_id)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._load_cluster(cluster_id), name=f"load cluster {cluster_id}"
            )
            self._loading[cluster_id] = task
            task.add_done_callback(lambda done: self._loaded(cluster_id, done))
        return await asyncio.shield(task)

    async def _load_cluster(self, cluster_id: str) -> ClusterView | None:
        generation = self._generation.get(cluster_id, 0)
        view = await self._store.load_cluster(cluster_id)
        # A change that arrived while we loaded makes what we read stale: answer the waiting
        # requests with it, but let the next one load again.
        if self._generation.get(cluster_id, 0) == generation:
            self._clusters[cluster_id] = view
        return view

    def _loaded(self, cluster_id: str, task: asyncio.Task[ClusterView | None]) -> None:
        if self._loading.get(cluster_id) is task:
            del self._loading[cluster_id]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone

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

    # -- invalidation ------------------------------------------------------------------

    def cluster_changed(self, cluster_id: str) -> None:
        """A cluster's grants or epoch changed (committed): reload what we know of it, then
        cancel the open exchanges of whoever lost access."""
        self._generation[cluster_id] = self._generation.get(cluster_id, 0) + 1
        self._clusters.pop(cluster_id, None)
        # A load already under way may have read the old state: the re-check loads anew.
        self._loading.pop(cluster_id, None)
        task = asyncio.get_running_loop().create_task(self._recheck(cluster_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recheck(self, cluster_id: str) -> None:
        try:
            view = await self._cluster(cluster_id)
        except KubegateError as exc:
            # The database is down: nothing can be confirmed, so nothing stays open.
            log.warning("cannot reload cluster access; closing its open streams: %s", exc)
            view = None
        except Exception:
            log.exception("reloading cluster access failed; closing its open streams")
            view = None
        for exchange in self._exchanges.matching(lambda x: x.identity.cluster_id == cluster_id):
            reason = _lost_access(exchange.identity, view)
            if reason is not None:
                exchange.cancel(reason)
        if view is None:
            for token_hash in [h for h, i in self._tokens.items() if i.cluster_id == cluster_id]:
                self._forget_token(token_hash)

    def user_changed(self, user_id: str) -> None:
        """A user was deactivated or removed: forget their tokens and close their streams
        (not those of the ServiceAccount tokens they issued: the account acts, not them)."""

        def theirs(identity: Identity) -> bool:
            return identity.user_id == user_id and identity.service_account_id is None

        for token_hash in [h for h, i in self._tokens.items() if theirs(i)]:
            self._forget_token(token_hash)
        for exchange in self._exchanges.matching(lambda x: theirs(x.identity)):
            exchange.cancel("the user's access was withdrawn")

    def person_signed_out(self, user_id: str) -> None:
        """A user signed out everywhere: forget the tokens their own logins minted and close
        those streams (their access keys' tokens and streams stay)."""

        def theirs(identity: Identity) -> bool:
            return (
                identity.user_id == user_id
                and identity.access_key_id is None
                and identity.service_account_id is None
            )

        for token_hash in [h for h, i in self._tokens.items() if theirs(i)]:
            self._forget_token(token_hash)
        for exchange in self._exchanges.matching(lambda x: theirs(x.identity)):
            exchange.cancel("the user signed out everywhere")

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
        tasks = [*self._tasks, *self._loading.values()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _lost_access(identity: Identity, view: ClusterView | None) -> str | None:
    if view is None:
        return "the cluster is gone or its access cannot be confirmed"
    if identity.epoch != view.epoch:
        return "all access to the cluster was revoked"
    if identity.service_account_id is not None:
        if identity.service_account_id not in view.service_accounts:
            return "the service account was deleted"
        return None
    if identity.user_id not in view.granted:
        return "the user's last grant on the cluster was deleted"
    return None
