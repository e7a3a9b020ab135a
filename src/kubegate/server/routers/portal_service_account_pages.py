"""The portal's service accounts page (ADR 0006): ``/portal/service-accounts``.

What ``kubegate cluster serviceaccount create|list|delete|kubeconfig`` does, in a browser, for
organisation admins: every managed ServiceAccount of the organisation's clusters with its
live status (a fragment the page polls, quickly while one is on its way), a form to create
one, a delete behind a confirmation page, and a kubeconfig download through the gateway or
straight to the apiserver, for a chosen time. A member is told they cannot, and why.

Every operation is :class:`~kubegate.server.service_accounts.ServiceAccounts`'s, the REST
API's own (checks, transactions, audit). Writes are plain form ``POST``\\ s with the
session's CSRF token; they redirect (303) back with a notice, or render the page again with
a readable error and its status (nothing changed).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import select

from kubegate.domain.access import DNS1123_LABEL_MAX, ClusterKind, GrantStatus, Role
from kubegate.errors import (
    KubegateError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
)
from kubegate.server.deps import Db, State
from kubegate.server.kube_tokens import Issuer, KubeTokenIssuer, kubeconfig_response
from kubegate.server.pagination import MAX_LIMIT, PageRequest
from kubegate.server.portal_guard import (
    csrf_field,
    form_writer,
    page_caller,
    redirect,
    refusal,
    to_sign_in,
)
from kubegate.server.portal_render import PortalTemplates
from kubegate.server.principal import Principal
from kubegate.server.routers.clusters import get_cluster
from kubegate.server.routers.portal_access_pages import NAMESPACE_PATTERN
from kubegate.server.routers.service_accounts import EXPIRES_HEADER
from kubegate.server.schemas.service_accounts import (
    ServiceAccountCreate,
    ServiceAccountKubeconfigRequest,
    ServiceAccountOut,
)
from kubegate.server.service_accounts import (
    MIN_SECONDS,
    SERVICE_ACCOUNT_DEFAULT_SECONDS,
    ServiceAccounts,
)
from kubegate.server.state import AppState
from kubegate.storage.models import Cluster

PAGE = "/portal/service-accounts"
# How often an open page refreshes the statuses: quickly while one is on its way.
REFRESH_SECONDS = 5
REFRESH_PENDING_SECONDS = 1
CLUSTER_LIMIT = 200
# The kubeconfig lifetimes offered (the server's service_account_kubeconfig_max_seconds caps
# them; the service checks the bounds again).
DURATIONS = (
    (600, "10 minutes"),
    (3600, "1 hour"),
    (8 * 3600, "8 hours"),
    (SERVICE_ACCOUNT_DEFAULT_SECONDS, "24 hours"),
    (7 * 86400, "7 days"),
    (30 * 86400, "30 days"),
)
MEMBERS_CANNOT = (
    "Only organisation admins manage service accounts, and you are a member. A service "
    "account is a Kubernetes identity for automation (CI, scripts) on a cluster; ask one of "
    "your organisation's kubegate admins for one. For your own kubectl access, open a cluster "
    "from the Clusters page."
)
DONE = {
    "created": "The service account was created. It shows as pending until the cluster's "
    "agent has made it.",
    "deleted": "The service account was deleted: its kubeconfigs through kubegate stopped "
    "working, and the agent deletes the ServiceAccount (its direct tokens die with it).",
}


@dataclass(frozen=True, slots=True)
class Row:
    """One service account as the page lists it, with its cluster's name."""

    cluster: Cluster
    account: ServiceAccountOut

    @property
    def key(self) -> str:
        """What the kubeconfig form's select sends for it."""
        return f"{self.cluster.id}/{self.account.id}"


def service_account_pages_router(templates: PortalTemplates) -> APIRouter:
    """The service accounts page's routes, rendering with ``templates``."""
    router = APIRouter(include_in_schema=False)

    def service_accounts(
        caller: Principal, db: Db, state: AppState, issuer: KubeTokenIssuer
    ) -> ServiceAccounts:
        return ServiceAccounts(db, state.sessions, state.settings, caller, state.tunnels, issuer)

    def refused(request: Request, caller: Principal, message: str = MEMBERS_CANNOT) -> Response:
        return templates.page(
            "access_refused.html",
            {
                "title": "Service accounts",
                "caller": caller,
                "csrf_token": csrf_field(request),
                "heading": "You cannot manage service accounts",
                "message": message,
                "back": "/portal/clusters",
            },
            status=403,
        )

    async def rows_context(accounts: ServiceAccounts) -> dict[str, Any]:
        """Every service account of the organisation's clusters that can have them."""
        db = accounts.db
        async with db.begin():
            clusters = list(
                (
                    await db.scalars(
                        select(Cluster)
                        .where(
                            Cluster.org_id == accounts.caller.actor.org_id,
                            Cluster.kind == ClusterKind.STANDARD.value,
                        )
                        .order_by(Cluster.name)
                        .limit(CLUSTER_LIMIT)
                    )
                ).all()
            )
        rows: list[Row] = []
        more = False
        for cluster in clusters:
            page = await accounts.list(cluster.id, PageRequest(MAX_LIMIT, None))
            more = more or page.next_cursor is not None
            listed = sorted(page.items, key=lambda a: (a.namespace, a.name))
            rows += [Row(cluster, account) for account in listed]
        on_its_way = (GrantStatus.PENDING.value, GrantStatus.CLUSTER_OFFLINE.value)
        pending = any(row.account.status in on_its_way for row in rows)
        return {
            "clusters": clusters,
            "rows": rows,
            "more": more,
            "refresh": REFRESH_PENDING_SECONDS if pending else REFRESH_SECONDS,
        }

    async def page_context(
        request: Request,
        accounts: ServiceAccounts,
        *,
        error: str | None = None,
        form: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        settings = accounts.settings
        maximum = settings.service_account_kubeconfig_max_seconds
        durations = [(s, label) for s, label in DURATIONS if MIN_SECONDS <= s <= maximum]
        return {
            "title": "Service accounts",
            "caller": accounts.caller,
            "csrf_token": csrf_field(request),
            "error": error,
            "notice": DONE.get(request.query_params.get("done", "")),
            "roles": [role.value for role in Role],
            "name_pattern": NAMESPACE_PATTERN,
            "name_max": DNS1123_LABEL_MAX,
            "durations": durations,
            "default_duration": min(SERVICE_ACCOUNT_DEFAULT_SECONDS, maximum),
            "gateway_enabled": settings.gateway_enabled,
            "form": {
                "cluster_id": "",
                "name": "",
                "namespace": "",
                "role": Role.EDIT.value,
                "scope": "namespace",
            }
            | (form or {}),
            **await rows_context(accounts),
        }

    @router.get(PAGE)
    async def service_accounts_page(
        request: Request, db: Db, state: State, issuer: Issuer
    ) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, PAGE)
        if not caller.actor.is_admin:
            return refused(request, caller)
        accounts = service_accounts(caller, db, state, issuer)
        return templates.page("service_accounts.html", await page_context(request, accounts))

    @router.get(f"{PAGE}/table")
    async def service_accounts_table(
        request: Request, db: Db, state: State, issuer: Issuer
    ) -> Response:
        try:  # the page refreshing itself is no use of the session: its idle timeout holds
            caller = await page_caller(request, touch=False)
        except Unauthenticated:
            return to_sign_in(request, PAGE)
        if not caller.actor.is_admin:
            return Response(status_code=403, headers={"HX-Redirect": PAGE})
        context = await rows_context(service_accounts(caller, db, state, issuer))
        return templates.page("service_accounts_table.html", context)

    async def failed(
        request: Request,
        accounts: ServiceAccounts,
        what: str,
        exc: KubegateError,
        form: dict[str, str] | None = None,
    ) -> Response:
        """The page again with why ``what`` did not happen (a member: refused)."""
        if isinstance(exc, PermissionDenied) and not accounts.caller.actor.is_admin:
            return refused(request, accounts.caller, refusal(what, exc))
        context = await page_context(request, accounts, error=refusal(what, exc), form=form)
        return templates.page("service_accounts.html", context, status=exc.status)

    @router.post(PAGE)
    async def create(
        request: Request,
        db: Db,
        state: State,
        issuer: Issuer,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        cluster_id: Annotated[str, Form(max_length=64)] = "",
        name: Annotated[str, Form(max_length=253)] = "",
        namespace: Annotated[str, Form(max_length=253)] = "",
        role: Annotated[str, Form(max_length=64)] = "",
        scope: Annotated[str, Form(max_length=64)] = "namespace",
    ) -> Response:
        caller = await form_writer(request, templates, csrf_token, PAGE)
        if isinstance(caller, Response):
            return caller
        form = {
            "cluster_id": cluster_id,
            "name": name.strip(),
            "namespace": namespace.strip(),
            "role": role,
            "scope": scope,
        }
        accounts = service_accounts(caller, db, state, issuer)
        body = ServiceAccountCreate(
            name=form["name"], namespace=form["namespace"], role=role, scope=scope
        )
        try:
            if not cluster_id:
                raise ValidationFailed("choose the cluster to make it on")
            await accounts.create(cluster_id, body)
        except KubegateError as exc:
            return await failed(request, accounts, "The service account was not created", exc, form)
        return redirect(f"{PAGE}?done=created")

    async def find(accounts: ServiceAccounts, cluster_id: str, account_id: str) -> Row:
        """The account ``account_id`` of ``cluster_id`` (404 when there is none)."""
        page = await accounts.list(cluster_id, PageRequest(MAX_LIMIT, None))
        async with accounts.db.begin():
            cluster = await get_cluster(accounts.db, accounts.caller.actor, cluster_id)
        for account in page.items:
            if account.id == account_id:
                return Row(cluster, account)
        raise NotFound(
            f"service account {account_id[:64]} not found on cluster {cluster.name}; it may "
            "have been deleted"
        )

    @router.get(f"{PAGE}/{{cluster_id}}/{{account_id}}/delete")
    async def confirm_delete(
        cluster_id: str, account_id: str, request: Request, db: Db, state: State, issuer: Issuer
    ) -> Response:
        path = f"{PAGE}/{cluster_id}/{account_id}/delete"
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, path)
        if not caller.actor.is_admin:
            return refused(request, caller)
        accounts = service_accounts(caller, db, state, issuer)
        try:
            row = await find(accounts, cluster_id, account_id)
        except KubegateError as exc:
            return await failed(request, accounts, "Nothing to delete", exc)
        context = {
            "title": f"Delete {row.account.name}?",
            "caller": caller,
            "csrf_token": csrf_field(request),
            "row": row,
        }
        return templates.page("service_account_delete.html", context)

    @router.post(f"{PAGE}/{{cluster_id}}/{{account_id}}/delete")
    async def delete(
        cluster_id: str,
        account_id: str,
        request: Request,
        db: Db,
        state: State,
        issuer: Issuer,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        caller = await form_writer(request, templates, csrf_token, PAGE)
        if isinstance(caller, Response):
            return caller
        accounts = service_accounts(caller, db, state, issuer)
        try:
            await accounts.delete(cluster_id, account_id)
        except KubegateError as exc:
            return await failed(request, accounts, "The service account was not deleted", exc)
        return redirect(f"{PAGE}?{urllib.parse.urlencode({'done': 'deleted'})}")

    @router.post(f"{PAGE}/kubeconfig")
    async def kubeconfig(
        request: Request,
        db: Db,
        state: State,
        issuer: Issuer,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        account: Annotated[str, Form(max_length=200)] = "",
        duration_seconds: Annotated[int | None, Form()] = None,
        via: Annotated[str, Form(max_length=16)] = "gateway",
    ) -> Response:
        caller = await form_writer(request, templates, csrf_token, PAGE)
        if isinstance(caller, Response):
            return caller
        accounts = service_accounts(caller, db, state, issuer)
        cluster_id, _, account_id = account.partition("/")
        body = ServiceAccountKubeconfigRequest(
            duration_seconds=duration_seconds, direct=via == "direct"
        )
        try:
            if not account_id:
                raise ValidationFailed("choose the service account")
            issued, expires_at = await accounts.kubeconfig(cluster_id, account_id, body)
        except KubegateError as exc:
            return await failed(request, accounts, "No kubeconfig was made", exc)
        response = kubeconfig_response(issued)
        response.headers[EXPIRES_HEADER] = expires_at.isoformat().replace("+00:00", "Z")
        return response

    return router
