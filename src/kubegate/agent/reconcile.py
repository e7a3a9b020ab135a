"""The agent's RBAC reconciler: keeps the cluster's kubegate bindings and ServiceAccounts equal
to the desired set.

A pass lists the ServiceAccounts and bindings kubegate owns, asks
:func:`~kubegate.agent.desired.plan_service_accounts` and then
:func:`~kubegate.agent.desired.plan` what to change (accounts first: a managed account's
binding is wanted only once its ServiceAccount is kubegate's, in place), carries that out and
reports one result per grant and per account. Passes run when the server sends a desired set,
when a watch sees an owned binding or ServiceAccount change (drift), every ``retry_seconds``
while something failed (the agent cannot watch namespaces, so a grant into a namespace that
does not exist yet is retried), and every ``resync_seconds``. Until the first desired set
arrives the reconciler does nothing: an agent that has not heard from the server must not
delete grants.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Sequence
from functools import partial

import httpx
from lightkube import ALL_NS, AsyncClient
from lightkube.core.client import LabelSelector
from lightkube.core.exceptions import ApiError
from lightkube.resources.core_v1 import ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding, RoleBinding

from kubegate.agent.desired import (
    DEFAULT_USER_PREFIX,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SERVICE_ACCOUNT_KIND,
    Manifest,
    ObjectKey,
    converged,
    converged_account,
    desired_account_binding,
    desired_binding,
    is_owned,
    key_of,
    plan,
    plan_service_accounts,
)
from kubegate.agent.kube_errors import NotOurs, describe, status_code
from kubegate.agent.metrics import AgentMetrics
from kubegate.domain.access import GrantSpec, ServiceAccountSpec
from kubegate.tunnel.control import GrantResult, ServiceAccountResult

logger = logging.getLogger(__name__)

ReportFn = Callable[[int, list[GrantResult], list[ServiceAccountResult]], Awaitable[None]]
"""Sends one pass's results for a revision to the server: per grant, per ServiceAccount."""

OWNED: LabelSelector = {MANAGED_BY_LABEL: MANAGED_BY}
DEBOUNCE_SECONDS = 0.075
"""How long a woken loop waits for more events, so a burst of them makes one pass."""
MAX_BACKOFF_SECONDS = 5.0
LIST_CHUNK = 500
Watched = RoleBinding | ClusterRoleBinding | ServiceAccount
Operation = tuple[ObjectKey, Callable[[], Awaitable[None]]]
_Results = tuple[list[GrantResult], list[ServiceAccountResult]]


class Reconciler:
    """Converges the cluster's owned RoleBindings, ClusterRoleBindings and ServiceAccounts on
    the desired set.

    ``client`` acts as the agent's service account; ``report`` receives ``(revision, grant
    results, service account results)`` after the first pass following each
    :meth:`set_desired` and whenever results change. Up to ``concurrency`` API calls run at
    once. :meth:`run` until cancelled.
    """

    def __init__(
        self,
        client: AsyncClient,
        report: ReportFn,
        *,
        user_prefix: str = DEFAULT_USER_PREFIX,
        resync_seconds: float = 300.0,
        retry_seconds: float = 2.0,
        concurrency: int = 16,
        metrics: AgentMetrics | None = None,
    ) -> None:
        self._client = client
        self._metrics = metrics if metrics is not None else AgentMetrics()
        self._report = report
        self._user_prefix = user_prefix
        self._resync_seconds = resync_seconds
        self._retry_seconds = retry_seconds
        self._concurrency = concurrency
        self._desired: tuple[int, tuple[GrantSpec, ...], tuple[ServiceAccountSpec, ...]] | None = (
            None
        )
        self._managed: frozenset[tuple[str, str]] = frozenset()
        self._report_due = False
        self._last_results: _Results | None = None
        self._logged_failures: dict[ObjectKey, str] = {}
        self._wake = asyncio.Event()

    @property
    def revision(self) -> int | None:
        """The revision of the desired set being converged on; None before the first."""
        return None if self._desired is None else self._desired[0]

    def manages(self, namespace: str, name: str) -> bool:
        """Whether the ServiceAccount ``namespace/name`` is in the current desired set: the
        only accounts the agent mints tokens for or lets a proxied request act as."""
        return (namespace, name) in self._managed

    def set_desired(
        self,
        revision: int,
        grants: Sequence[GrantSpec],
        service_accounts: Sequence[ServiceAccountSpec] = (),
    ) -> None:
        """Adopt a desired set (without waiting); an older revision than the current is ignored.

        The same revision again is adopted too, and reported after the next pass.
        """
        current = self.revision
        if current is not None and revision < current:
            logger.info(
                "ignoring an older desired set",
                extra={"revision": revision, "current_revision": current},
            )
            return
        self._desired = (revision, tuple(grants), tuple(service_accounts))
        self._managed = frozenset((a.namespace, a.name) for a in service_accounts)
        self._report_due = True
        self._wake.set()

    async def run(self) -> None:
        """Watch owned bindings and ServiceAccounts and reconcile until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._watch(RoleBinding))
            tasks.create_task(self._watch(ClusterRoleBinding))
            tasks.create_task(self._watch(ServiceAccount))
            await self._reconcile_forever()

    async def _reconcile_forever(self) -> None:
        wait: float | None = None
        backoff = min(0.25, self._retry_seconds)
        while True:
            await self._sleep_until_woken(wait)
            if self._desired is None:
                self._wake.clear()  # drift before the first desired set: nothing to compare to
                wait = None
                continue
            revision, grants, accounts = self._desired
            report_due, self._report_due = self._report_due, False
            self._wake.clear()  # anything that happens from here on wakes the next pass
            started = time.perf_counter()
            try:
                results, incomplete = await self._pass(grants, accounts)
            except Exception as exc:
                self._metrics.reconciled(time.perf_counter() - started, failed=True)
                self._report_due |= report_due
                logger.warning(
                    "reconcile pass failed; retrying",
                    exc_info=not isinstance(exc, httpx.HTTPError),  # a traceback for a bug
                    extra={"revision": revision, "error": repr(exc), "retry_in": backoff},
                )
                wait, backoff = backoff, min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            self._metrics.reconciled(time.perf_counter() - started, failed=incomplete)
            backoff = min(0.25, self._retry_seconds)
            if report_due or results != self._last_results:
                await self._send_report(revision, results)
            grant_results, account_results = results
            failed = (
                incomplete
                or any(r.status == "failed" for r in grant_results)
                or any(r.status == "failed" for r in account_results)
            )
            wait = self._retry_seconds if failed or self._report_due else self._resync_seconds

    async def _sleep_until_woken(self, seconds: float | None) -> None:
        """Wait for a wake-up (then a moment more, for the rest of a burst) or ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            return
        await asyncio.sleep(DEBOUNCE_SECONDS)

    async def _send_report(self, revision: int, results: _Results) -> None:
        try:
            await self._report(revision, *results)
        except Exception:
            self._report_due = True  # try again after the next pass
            logger.exception("reporting grant results failed", extra={"revision": revision})
            return
        self._last_results = results

    async def _pass(
        self, grants: Sequence[GrantSpec], accounts: Sequence[ServiceAccountSpec]
    ) -> tuple[_Results, bool]:
        """One pass: the results per grant and per account, and whether any change (even a
        deletion) failed."""
        observed_accounts, observed = await asyncio.gather(self._list_accounts(), self._observe())
        failures: dict[ObjectKey, str] = {}
        accounts_todo = plan_service_accounts(accounts, observed_accounts)
        account_ops: list[Operation] = [
            *((key_of(m), partial(self._create, m)) for m in accounts_todo.create),
            *((key_of(m), partial(self._replace, m)) for m in accounts_todo.replace),
            *((key, partial(self._delete, key)) for key in accounts_todo.delete),
        ]
        await self._carry_out(account_ops, failures)
        # A binding only ever names a ServiceAccount kubegate has in place: one whose account
        # failed (someone else's under that name, a missing namespace) gets none, and loses
        # the one it had.
        in_place = [a for a in accounts if _account_key(a) not in failures]
        todo = plan(list(grants), observed, self._user_prefix, in_place)
        ops: list[Operation] = [
            *((key_of(m), partial(self._create, m)) for m in todo.create),
            *((key_of(m), partial(self._replace, m)) for m in todo.replace),
            *((key_of(m), partial(self._update, m)) for m in todo.update),
            *((key, partial(self._delete, key)) for key in todo.delete),
        ]
        await self._carry_out(ops, failures)
        if ops or account_ops:
            # Only retries of known failures: keep them out of the info log.
            level = logging.INFO if len(ops) + len(account_ops) > len(failures) else logging.DEBUG
            logger.log(
                level,
                "reconciled",
                extra={
                    # Not "created": LogRecord has that attribute and refuses the key.
                    "creates": len(todo.create),
                    "replaces": len(todo.replace),
                    "updates": len(todo.update),
                    "deletes": len(todo.delete),
                    "account_creates": len(accounts_todo.create),
                    "account_replaces": len(accounts_todo.replace),
                    "account_deletes": len(accounts_todo.delete),
                    "failures": len(failures),
                },
            )
        for key, detail in failures.items():
            if self._logged_failures.get(key) != detail:  # once, not at every retry
                is_account = key.kind == SERVICE_ACCOUNT_KIND
                logger.warning(
                    "changing a service account failed"
                    if is_account
                    else "changing a binding failed",
                    extra={
                        "kind": key.kind,
                        "namespace": key.namespace,
                        "service_account" if is_account else "binding": key.name,
                        "error": detail,
                    },
                )
        self._logged_failures = failures
        results = []
        for grant in grants:
            key = key_of(desired_binding(grant, self._user_prefix))
            if key in failures:
                results.append(GrantResult(grant.grant_id, "failed", failures[key]))
            else:
                results.append(GrantResult(grant.grant_id, "applied"))
        account_results = []
        for account in accounts:
            why = failures.get(_account_key(account)) or failures.get(
                key_of(desired_account_binding(account))
            )
            if why is not None:
                account_results.append(
                    ServiceAccountResult(account.service_account_id, "failed", why)
                )
            else:
                account_results.append(ServiceAccountResult(account.service_account_id, "applied"))
        return (results, account_results), bool(failures)

    async def _carry_out(self, ops: list[Operation], failures: dict[ObjectKey, str]) -> None:
        """Run ``ops`` at once (up to ``concurrency`` in flight), recording why each failed."""
        if not ops:
            return
        limit = asyncio.Semaphore(self._concurrency)
        async with asyncio.TaskGroup() as tasks:
            for key, op in ops:
                tasks.create_task(self._guarded(limit, key, op, failures))

    async def _guarded(
        self,
        limit: asyncio.Semaphore,
        key: ObjectKey,
        op: Callable[[], Awaitable[None]],
        failures: dict[ObjectKey, str],
    ) -> None:
        """Run one API change under the concurrency limit, recording why it failed."""
        async with limit:
            try:
                await op()
            except (ApiError, httpx.HTTPError, NotOurs) as exc:
                failures[key] = describe(exc)

    async def _observe(self) -> list[Manifest]:
        """The owned bindings in the cluster, as plain manifests."""
        role_bindings, cluster_role_bindings = await asyncio.gather(
            self._list(RoleBinding), self._list(ClusterRoleBinding)
        )
        return [*role_bindings, *cluster_role_bindings]

    async def _list_accounts(self) -> list[Manifest]:
        """The owned ServiceAccounts in the cluster, as plain manifests."""
        found = self._client.list(
            ServiceAccount, namespace=ALL_NS, labels=OWNED, chunk_size=LIST_CHUNK
        )
        return [obj.to_dict() async for obj in found]

    async def _list(self, resource: type[RoleBinding | ClusterRoleBinding]) -> list[Manifest]:
        if resource is RoleBinding:
            found = self._client.list(
                RoleBinding, namespace=ALL_NS, labels=OWNED, chunk_size=LIST_CHUNK
            )
            return [obj.to_dict() async for obj in found]
        cluster_found = self._client.list(ClusterRoleBinding, labels=OWNED, chunk_size=LIST_CHUNK)
        return [obj.to_dict() async for obj in cluster_found]

    async def _create(self, manifest: Manifest) -> None:
        key = key_of(manifest)
        try:
            if key.kind == SERVICE_ACCOUNT_KIND:
                await self._client.create(ServiceAccount.from_dict(manifest))
            elif key.namespace:
                await self._client.create(RoleBinding.from_dict(manifest))
            else:
                await self._client.create(ClusterRoleBinding.from_dict(manifest))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            # Not in our (label-selected) list, yet there: someone else's, or made just now.
            current = await self._get(key)
            if current is None:
                raise
            if not is_owned(current):
                raise NotOurs(key) from exc
            done = (
                converged_account(manifest, current)
                if key.kind == SERVICE_ACCOUNT_KIND
                else converged(manifest, current)
            )
            if not done:
                raise  # ours but not as wanted: the watch event it made brings another pass

    async def _get(self, key: ObjectKey) -> Manifest | None:
        try:
            if key.kind == SERVICE_ACCOUNT_KIND:
                account = await self._client.get(ServiceAccount, key.name, namespace=key.namespace)
                manifest: Manifest = account.to_dict()
            elif key.namespace:
                found = await self._client.get(RoleBinding, key.name, namespace=key.namespace)
                manifest = found.to_dict()
            else:
                cluster_found = await self._client.get(ClusterRoleBinding, key.name)
                manifest = cluster_found.to_dict()
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return manifest

    async def _update(self, manifest: Manifest) -> None:
        # No resourceVersion: RBAC objects allow unconditional updates, and ours win.
        if key_of(manifest).namespace:
            await self._client.replace(RoleBinding.from_dict(manifest))
        else:
            await self._client.replace(ClusterRoleBinding.from_dict(manifest))

    async def _replace(self, manifest: Manifest) -> None:
        # roleRef is immutable; a ServiceAccount made for another id takes its tokens along.
        await self._delete(key_of(manifest))
        await self._create(manifest)

    async def _delete(self, key: ObjectKey) -> None:
        try:
            if key.kind == SERVICE_ACCOUNT_KIND:
                # Its bound tokens stop working with it: that is how a deleted account ends.
                await self._client.delete(ServiceAccount, key.name, namespace=key.namespace)
            elif key.namespace:
                await self._client.delete(RoleBinding, key.name, namespace=key.namespace)
            else:
                await self._client.delete(ClusterRoleBinding, key.name)
        except ApiError as exc:
            if exc.status.code != 404:
                raise

    async def _follow(self, events: AsyncIterable[tuple[str, object]]) -> None:
        """Wake the loop on each event of one watch; close its HTTP response when done."""
        try:
            async for _event in events:
                self._wake.set()
        finally:
            if isinstance(events, AsyncGenerator):
                await events.aclose()

    async def _watch(self, resource: type[Watched]) -> None:
        """Wake the loop on every change to an owned object of ``resource``, forever.

        lightkube re-opens a watch the apiserver ended cleanly, from the last resourceVersion
        it saw. When that version has expired (410 Gone) or the connection fails, this
        starts a fresh watch without a version, whose synthetic ADDED events, and the wake-up
        on every restart, make a pass catch up on whatever happened in between.
        """
        loop = asyncio.get_running_loop()
        backoff = 0.25
        while True:
            self._wake.set()
            started = loop.time()
            try:
                if resource is RoleBinding:
                    watch = self._client.watch(RoleBinding, namespace=ALL_NS, labels=OWNED)
                    await self._follow(watch)
                elif resource is ServiceAccount:
                    accounts = self._client.watch(ServiceAccount, namespace=ALL_NS, labels=OWNED)
                    await self._follow(accounts)
                else:
                    await self._follow(self._client.watch(ClusterRoleBinding, labels=OWNED))
            except Exception as exc:
                if status_code(exc) == 410:
                    logger.info("watch expired; watching afresh", extra={"kind": resource.__name__})
                    continue
                if loop.time() - started > MAX_BACKOFF_SECONDS:
                    backoff = 0.25  # it worked for a while: this is a new outage
                logger.warning(
                    "watch failed; retrying",
                    extra={"kind": resource.__name__, "error": repr(exc), "retry_in": backoff},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)


def _account_key(account: ServiceAccountSpec) -> ObjectKey:
    return ObjectKey(SERVICE_ACCOUNT_KIND, account.namespace, account.name)
