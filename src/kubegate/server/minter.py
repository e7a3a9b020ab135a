"""Minting kube tokens in batches: the checks and writes of the mints of a moment, together.

A token is ``kg_kube_…`` (256 random bits); only its SHA-256 is stored, with the user, the
organisation, the cluster and the cluster's token epoch at mint time, so revoke-all (which
bumps the epoch) voids every older token. A token is minted as soon as the caller holds a
grant on the cluster, whatever the grant's status: kubectl gets Forbidden from Kubernetes
until the grant is applied. Admins need a grant too.

Minting is on the hot path of every ``kubectl`` run through the exec plugin, and what a mint
costs the server is round trips to the database, not rows. So :class:`Minter` takes the mints
that arrive together (:class:`~kubegate.server.batching.Batcher`), looks up all their
clusters and grants in one statement, checks each mint in arrival order, then writes every
token and every audit event (``kube_token.mint``, refusals included) in one transaction, one
multi-row insert per table, and answers each mint once that has committed. A token is durable
before its mint returns, as it would be in a transaction of its own. Both trips to the
database are :class:`~kubegate.storage.engine.RoundTrips` (on SQLite, one thread switch
each rather than one per DBAPI call).

A failed batch takes no other mint with it. When the database refuses the batch (a row breaks
a constraint: its user or cluster was deleted meanwhile), each mint is written again in a
transaction of its own, so only the mints at fault fail. When the database is away, that
batch's mints fail with the database's error (503 at the API) having written nothing, and
the next batch starts afresh.

Each user's mint rate is limited in memory, per server process (:class:`MintLimiter`).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter
from sqlalchemy import Connection, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from kubegate.auth.hashing import new_secret, secret_hash
from kubegate.domain.access import NO_ACCESS, ClusterKind, require_cluster_access_supported
from kubegate.domain.key_scope import token_scope
from kubegate.errors import (
    KubegateError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
)
from kubegate.gateway.limits import RateLimiter, retry_after
from kubegate.server.audit import audit_row, failure_detail
from kubegate.server.batching import MAX_BATCH, Batcher
from kubegate.server.principal import Principal
from kubegate.settings import Settings
from kubegate.storage.engine import RoundTrips
from kubegate.storage.models import AuditEvent, Cluster, Grant, KubeToken, is_id, new_id, utcnow

log = logging.getLogger(__name__)

MINT_ACTION = "kube_token.mint"
TOKEN_PREFIX = "kg_kube"
MIN_TTL_SECONDS = 60

# Expired rows are deleted while minting, for the minting user only and at most this often
# per user and process, once they are this far past expiry (so a token that has just expired
# still answers "expired", not "unknown", for a while).
_CLEANUP_EVERY = 300.0
_CLEANUP_AFTER = dt.timedelta(hours=1)
_CLEANUP_TRACKED = 10_000


class MintLimiter:
    """Kube token mints per user, in memory in one server process.

    A token bucket per user: ``per_minute`` at once, refilled evenly over a minute. Also
    remembers when each user's expired tokens were last cleaned up, so that costs a query only
    now and then.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        refused: Counter | None = None,
    ) -> None:
        self._limiter = RateLimiter(rate=per_minute / 60, burst=per_minute)
        self._clock = clock
        self._refused = refused
        self._cleanup_due: dict[str, float] = {}

    def take(self, user_id: str) -> None:
        """Spend one mint of ``user_id``'s, or raise RateLimited saying how long to wait."""
        wait = self._limiter.take(user_id, self._clock())
        if wait > 0:
            seconds = retry_after(wait)
            if self._refused is not None:
                self._refused.inc()
            raise RateLimited(
                f"too many kube tokens minted; try again in {seconds} s", retry_after=seconds
            )

    def cleanup_due(self, user_id: str) -> bool:
        """True at most once per cleanup interval per user: time to delete old rows."""
        now = self._clock()
        if self._cleanup_due.get(user_id, 0.0) > now:
            return False
        if len(self._cleanup_due) >= _CLEANUP_TRACKED:
            self._cleanup_due = {k: t for k, t in self._cleanup_due.items() if t > now}
        self._cleanup_due[user_id] = now + _CLEANUP_EVERY
        return True


@dataclass(frozen=True, slots=True)
class MintRequest:
    """A caller asking for a kube token on a cluster (``via``: which endpoint)."""

    caller: Principal
    cluster_id: str
    ttl_seconds: int | None
    via: str


@dataclass(frozen=True, slots=True)
class MintedToken:
    """A freshly minted (and committed) kube token; ``token`` exists only here and in the
    answer."""

    token: str
    token_id: str
    expires_at: dt.datetime
    cluster_id: str
    cluster_name: str


@dataclass(frozen=True, slots=True)
class _Target:
    """What a mint needs of its cluster, and whether the minting user holds a grant on it."""

    org_id: str
    name: str
    kind: str
    epoch: int
    granted: bool


@dataclass(frozen=True, slots=True)
class _Cleanup:
    """Delete ``user_id``'s kube tokens that expired before ``expired_before``."""

    user_id: str
    expired_before: dt.datetime


@dataclass(frozen=True, slots=True)
class _Decided:
    """One mint, checked: its rows to write (every column given; all land or none does) and
    its answer once they have: the token, or the refusal."""

    audit: dict[str, Any]
    token: dict[str, Any] | None
    cleanup: _Cleanup | None
    answer: MintedToken | KubegateError


# The clusters of a batch, each with those of the batch's users who hold a grant on it.
_TARGETS = (
    select(
        Cluster.id,
        Cluster.org_id,
        Cluster.name,
        Cluster.kind,
        Cluster.token_epoch,
        Grant.user_id,
    )
    .outerjoin(
        Grant,
        (Grant.cluster_id == Cluster.id) & Grant.user_id.in_(bindparam("user_ids", expanding=True)),
    )
    .where(Cluster.id.in_(bindparam("cluster_ids", expanding=True)))
)


def lifetime(settings: Settings, ttl_seconds: int | None) -> int:
    """The token's lifetime: the setting, or a shorter one the caller asked for (422
    otherwise)."""
    configured = settings.kube_token_ttl_seconds
    if ttl_seconds is None:
        return configured
    if not MIN_TTL_SECONDS <= ttl_seconds <= configured:
        raise ValidationFailed(
            f"ttl_seconds must be between {MIN_TTL_SECONDS} and {configured} (this server's "
            f"kube token lifetime); got {ttl_seconds}",
            details={"field": "ttl_seconds"},
        )
    return ttl_seconds


class Minter:
    """Checks and writes kube token mints in batches; started and closed by the lifespan
    (:meth:`close` writes the mints still queued; later ones answer 503)."""

    def __init__(
        self,
        trips: RoundTrips,
        settings: Settings,
        limiter: MintLimiter,
        *,
        max_batch: int = MAX_BATCH,
        minted: Counter | None = None,
    ) -> None:
        self._trips = trips
        self._minted = minted
        self._settings = settings
        self._limiter = limiter
        self._batcher: Batcher[MintRequest, MintedToken] = Batcher(
            self._mint_batch, name="kube token minter", max_batch=max_batch
        )

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    async def mint(self, request: MintRequest) -> MintedToken:
        """Mint a kube token, checked in this order: the cluster exists in the caller's
        organisation (404), is within the caller's access key scope if they use a key (403),
        supports Cluster Access (409), the caller holds a grant on it
        (403), the requested lifetime fits (422), the caller's mint rate (429).

        Returns once the token and its audit event are committed; a refusal is raised once
        its audit event is. The token is never logged or audited. A caller cancelled while
        waiting does not withdraw its mint.
        """
        return await self._batcher.submit(request)

    async def _mint_batch(
        self, requests: list[MintRequest]
    ) -> Sequence[MintedToken | KubegateError | IntegrityError]:
        keys = {(r.cluster_id, r.caller.actor.user_id) for r in requests if is_id(r.cluster_id)}
        targets = await self._trips.run(_targets, keys) if keys else {}
        decided = [self._decide(request, targets) for request in requests]
        errors = await self._trips.run(_write_batch, decided)
        if self._minted is not None:
            self._minted.inc(
                sum(
                    1
                    for one, error in zip(decided, errors, strict=True)
                    if error is None and one.token is not None
                )
            )
        return [
            one.answer if error is None else error
            for one, error in zip(decided, errors, strict=True)
        ]

    def _decide(
        self, request: MintRequest, targets: dict[tuple[str, str], _Target | None]
    ) -> _Decided:
        """Check one mint against the batch's lookup and make its rows."""
        caller, cluster_id = request.caller, request.cluster_id
        actor = caller.actor
        try:
            target = targets.get((cluster_id, actor.user_id))
            # Another organisation's cluster answers exactly like a missing one.
            if target is None or target.org_id != actor.org_id:
                raise NotFound(f"cluster {cluster_id[:64]} not found")
            if caller.key_scope is not None and not caller.key_scope.includes_cluster(cluster_id):
                raise PermissionDenied(
                    f"this access key's scope does not include cluster {target.name}"
                )
            require_cluster_access_supported(ClusterKind(target.kind))
            if not target.granted:
                raise PermissionDenied(NO_ACCESS)
            scope = token_scope(caller.key_scope, cluster_id)
            seconds = lifetime(self._settings, request.ttl_seconds)
            self._limiter.take(actor.user_id)
        except KubegateError as exc:
            refused = audit_row(
                caller,
                MINT_ACTION,
                target_type="cluster",
                target_id=cluster_id,
                cluster_id=cluster_id,
                result="failure",
                detail=failure_detail(exc),
            )
            return _Decided(refused, None, None, exc)

        now = utcnow()
        # Whole seconds: the answer (an ExecCredential's expirationTimestamp) and the stored
        # expiry are the same instant.
        expires_at = (now + dt.timedelta(seconds=seconds)).replace(microsecond=0)
        if caller.access_key_id is not None:
            # A key's tokens end when the key does.
            expires_at = min(expires_at, caller.token_expires_at.replace(microsecond=0))
        token, token_id = new_secret(TOKEN_PREFIX), new_id()
        cleanup = None
        if self._limiter.cleanup_due(actor.user_id):
            cleanup = _Cleanup(actor.user_id, now - _CLEANUP_AFTER)
        row = {
            "id": token_id,
            "token_hash": secret_hash(token),
            "user_id": actor.user_id,
            "cluster_id": cluster_id,
            "org_id": target.org_id,
            "token_epoch": target.epoch,
            "access_key_id": caller.access_key_id,
            "scope": None if scope is None else scope.to_json(),
            "created_at": now,
            "expires_at": expires_at,
        }
        minted = audit_row(
            caller,
            MINT_ACTION,
            target_type="kube_token",
            target_id=token_id,
            cluster_id=cluster_id,
            detail={
                "via": request.via,
                "expires_at": expires_at.isoformat().replace("+00:00", "Z"),
                "token_epoch": target.epoch,
                **({"access_key_id": caller.access_key_id} if caller.access_key_id else {}),
            },
        )
        answer = MintedToken(token, token_id, expires_at, cluster_id, target.name)
        return _Decided(minted, row, cleanup, answer)


def _targets(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], _Target | None]:
    """Each mint's cluster as its user sees it, keyed by (cluster id, user id)."""
    parameters = {
        "cluster_ids": sorted({cluster_id for cluster_id, _ in keys}),
        "user_ids": sorted({user_id for _, user_id in keys}),
    }
    rows = conn.execute(_TARGETS, parameters).all()
    clusters = {row.id: row for row in rows}
    grants = {(row.id, row.user_id) for row in rows if row.user_id is not None}
    found: dict[tuple[str, str], _Target | None] = {}
    for cluster_id, user_id in keys:
        row = clusters.get(cluster_id)
        found[(cluster_id, user_id)] = (
            None
            if row is None
            else _Target(
                row.org_id, row.name, row.kind, row.token_epoch, (cluster_id, user_id) in grants
            )
        )
    return found


def _write_batch(conn: Connection, decided: list[_Decided]) -> list[IntegrityError | None]:
    """Write the batch in one transaction; if the database refuses it, each mint in one of
    its own, so only the mints at fault fail (their error in their place, None for the rest)."""
    try:
        _write(conn, decided)
        conn.commit()
    except IntegrityError as exc:
        conn.rollback()
        if len(decided) == 1:
            return [exc]
        log.info("a batch of %d mints was refused; writing them one by one", len(decided))
        return [_write_batch(conn, [one])[0] for one in decided]
    return [None] * len(decided)


def _write(conn: Connection, decided: list[_Decided]) -> None:
    """The batch's writes: clean-ups first, then one insert per table."""
    for cleanup in {one.cleanup for one in decided if one.cleanup is not None}:
        conn.execute(
            delete(KubeToken).where(
                KubeToken.user_id == cleanup.user_id,
                KubeToken.expires_at < cleanup.expired_before,
            )
        )
    tokens = [one.token for one in decided if one.token is not None]
    if tokens:
        conn.execute(insert(KubeToken), tokens)
    # recorded_at at the write, not when the mint was decided (server/audit_query.py).
    recorded_at = utcnow()
    conn.execute(insert(AuditEvent), [{**one.audit, "recorded_at": recorded_at} for one in decided])
