"""The portal's cluster Access view (ADR 0006): ``/portal/clusters/{id}``.

One page that adapts to the viewer. An admin sees the organisation's members, every grant
of the cluster with its live status (a fragment the page polls), a form to create a grant,
a button per grant to delete it and *Revoke all* behind typing the cluster's name. A member
sees their own access, how to get a kubeconfig with the exec plugin, and a download of one
with an embedded kube token. The gateway disabled, or a sandbox cluster, is said as such.

Every operation is :class:`~kubegate.server.access.ClusterAccess`'s, the same the JSON
portal API and the REST API use (checks, transactions, audit): these routes only read a
form, call it and render. Writes are plain form ``POST``\\ s carrying the session's CSRF
token in a hidden field; they redirect (303) back to the page with a notice, or render it
again with a readable error and the error's status (403 for a member, 400/422 for a bad
value, nothing changed).
"""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from kubegate.domain.access import (
    DNS1123_LABEL_MAX,
    SANDBOX_REFUSAL,
    ClusterKind,
    Role,
    require_admin,
)
from kubegate.errors import (
    KubegateError,
    NotFound,
    Unauthenticated,
    ValidationFailed,
)
from kubegate.server.access import ClusterAccess
from kubegate.server.deps import Db, State, public_base_url
from kubegate.server.kube_tokens import Issuer, KubeTokenIssuer, kubeconfig_response
from kubegate.server.pagination import MAX_LIMIT, PageRequest
from kubegate.server.portal_format import spoken_duration
from kubegate.server.portal_guard import (
    CLUSTERS,
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
from kubegate.server.schemas.access import GrantCreate, GrantOut
from kubegate.server.service_accounts import ServiceAccounts
from kubegate.server.state import AppState
from kubegate.storage.models import Cluster

# A namespace as the browser checks it before sending (the server checks again):
# a DNS-1123 label, as domain/access.py's dns1123_label_problem.
NAMESPACE_PATTERN = "[a-z0-9]([\\-a-z0-9]*[a-z0-9])?"
# How often an open Access view refreshes its grants: quickly while one is on its way.
REFRESH_SECONDS = 5
REFRESH_PENDING_SECONDS = 1
GATEWAY_OFF = (
    "Cluster Access is unavailable: the access gateway is turned off on this server, so "
    "there are no grants and no kubeconfigs. The person who runs kubegate can turn it on "
    "(gateway_enabled)."
)
DONE = {
    "created": "The grant was created. It shows as pending until the cluster's agent has "
    "applied it.",
    "exists": "That member already had exactly this grant; nothing was added.",
    "deleted": "The grant was deleted; the cluster's agent removes its RBAC binding.",
    "revoked": "Every grant on this cluster was deleted, and every kube token issued for it "
    "stopped working.",
}


def cluster_path(cluster_id: str) -> str:
    return f"{CLUSTERS}/{cluster_id}"


def _refresh(grants: Sequence[GrantOut]) -> int:
    """How soon to look again at ``grants``: quickly while one is on its way."""
    pending = any(g.status in ("pending", "cluster_offline") for g in grants)
    return REFRESH_PENDING_SECONDS if pending else REFRESH_SECONDS


def access_pages_router(templates: PortalTemplates) -> APIRouter:
    """The Access view's routes, rendering with ``templates``."""
    router = APIRouter(include_in_schema=False)

    def cluster_access(
        caller: Principal, db: Db, state: AppState, issuer: KubeTokenIssuer
    ) -> ClusterAccess:
        return ClusterAccess(db, state.sessions, state.settings, caller, state.tunnels, issuer)

    async def grants_context(
        access: ClusterAccess, cluster_id: str, caller: Principal
    ) -> dict[str, Any]:
        page = await access.grants(cluster_id, PageRequest(MAX_LIMIT, None))
        grants = page.items
        own = [g for g in grants if g.user_id == caller.actor.user_id]
        return {
            "grants": grants,
            "more_grants": page.next_cursor is not None,
            "own_grants": own,
            "refresh": _refresh(grants),
            "mine_refresh": _refresh(own),
        }

    async def access_context(
        request: Request,
        caller: Principal,
        db: Db,
        state: AppState,
        issuer: KubeTokenIssuer,
        cluster: Cluster,
        *,
        error: str | None = None,
        form: dict[str, str] | None = None,
        with_members: bool = True,
    ) -> dict[str, Any]:
        settings = state.settings
        ttl = settings.kube_token_ttl_seconds
        now = dt.datetime.now(dt.UTC)
        context: dict[str, Any] = {
            "title": f"{cluster.name} · Access",
            "caller": caller,
            "is_admin": caller.actor.is_admin,
            "csrf_token": csrf_field(request),
            "cluster": cluster,
            "online": state.tunnels.is_online(cluster.id),
            "unavailable": None,
            "can_manage": False,
            "has_access": False,
            "grants": [],
            "more_grants": False,
            "own_grants": [],
            "refresh": REFRESH_SECONDS,
            "mine_refresh": REFRESH_SECONDS,
            "members": [],
            "admin_kubeconfig": False,
            "roles": [role.value for role in Role],
            "namespace_pattern": NAMESPACE_PATTERN,
            "namespace_max": DNS1123_LABEL_MAX,
            "server_url": public_base_url(request),
            "token_lifetime": spoken_duration(ttl),
            "token_expires_at": now + dt.timedelta(seconds=ttl),
            "error": error,
            "notice": DONE.get(request.query_params.get("done", "")),
            "form": {"email": "", "role": "view", "scope": "namespace", "namespace": ""}
            | (form or {}),
        }
        if not settings.gateway_enabled:
            context["unavailable"] = GATEWAY_OFF
            return context
        if ClusterKind(cluster.kind) is ClusterKind.SANDBOX:
            context["unavailable"] = SANDBOX_REFUSAL
            return context
        access = cluster_access(caller, db, state, issuer)
        capabilities = await access.capabilities(cluster.id)
        context["can_manage"] = capabilities.can_manage
        context["has_access"] = capabilities.has_access
        context |= await grants_context(access, cluster.id, caller)
        if capabilities.can_manage and with_members:  # not for the polled grants
            members = await access.members(cluster.id, PageRequest(MAX_LIMIT, None))
            context["members"] = members.items
            context["admin_kubeconfig"] = await _may_take_admin_kubeconfig(
                ServiceAccounts(db, state.sessions, settings, caller, state.tunnels, issuer),
                cluster.id,
            )
        return context

    def not_found(caller: Principal, request: Request, message: str) -> Response:
        return templates.page(
            "access_refused.html",
            {
                "title": "Cluster not found",
                "caller": caller,
                "csrf_token": csrf_field(request),
                "heading": "Cluster not found",
                "message": f"{message}. It may have been deleted, or belong to another "
                "organisation; the Clusters page lists yours.",
            },
            status=404,
        )

    @router.get(f"{CLUSTERS}/{{cluster_id}}")
    async def access_page(
        cluster_id: str, request: Request, db: Db, state: State, issuer: Issuer
    ) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, cluster_path(cluster_id))
        try:
            cluster = await get_cluster(db, caller.actor, cluster_id)
        except NotFound as exc:
            return not_found(caller, request, exc.message)
        context = await access_context(request, caller, db, state, issuer, cluster)
        return templates.page("access.html", context)

    async def fragment(
        cluster_id: str,
        request: Request,
        db: Db,
        state: AppState,
        issuer: KubeTokenIssuer,
        template: str,
    ) -> Response:
        """A part of the Access view the open page polls for (``template``)."""
        try:  # the page refreshing itself is no use of the session: its idle timeout holds
            caller = await page_caller(request, touch=False)
        except Unauthenticated:
            return to_sign_in(request, cluster_path(cluster_id))
        try:
            cluster = await get_cluster(db, caller.actor, cluster_id)
        except NotFound:
            return Response(status_code=404, headers={"HX-Redirect": CLUSTERS})
        context = await access_context(
            request, caller, db, state, issuer, cluster, with_members=False
        )
        return templates.page(template, context)

    @router.get(f"{CLUSTERS}/{{cluster_id}}/grants")
    async def grants_fragment(
        cluster_id: str, request: Request, db: Db, state: State, issuer: Issuer
    ) -> Response:
        return await fragment(cluster_id, request, db, state, issuer, "access_grants.html")

    @router.get(f"{CLUSTERS}/{{cluster_id}}/mine")
    async def mine_fragment(
        cluster_id: str, request: Request, db: Db, state: State, issuer: Issuer
    ) -> Response:
        return await fragment(cluster_id, request, db, state, issuer, "access_mine.html")

    async def write(
        request: Request,
        db: Db,
        state: AppState,
        issuer: KubeTokenIssuer,
        cluster_id: str,
        csrf_token: str,
        action: Callable[[ClusterAccess, Cluster], Awaitable[str | Response]],
        *,
        what: str,
        form: dict[str, str] | None = None,
    ) -> Response:
        """Run one write as the signed-in caller: sign-in when there is no session, 403
        without the page's CSRF token, the page again with the error when it is refused, and
        back to the page with a notice (``action`` answers its key) when it is done."""
        path = cluster_path(cluster_id)
        caller = await form_writer(request, templates, csrf_token, path)
        if isinstance(caller, Response):
            return caller
        try:  # ClusterAccess's writes open their own transactions: this read ends first
            async with db.begin():
                cluster = await get_cluster(db, caller.actor, cluster_id)
        except NotFound as exc:
            return not_found(caller, request, exc.message)
        try:
            if not state.settings.gateway_enabled:  # as the JSON API's routes: not there
                raise NotFound("the access gateway is disabled on this server")
            done = await action(cluster_access(caller, db, state, issuer), cluster)
        except KubegateError as exc:
            message = refusal(what, exc)
            cluster = await get_cluster(db, caller.actor, cluster_id)  # fresh after a rollback
            context = await access_context(
                request, caller, db, state, issuer, cluster, error=message, form=form
            )
            return templates.page("access.html", context, status=exc.status)
        if isinstance(done, Response):
            return done
        return redirect(f"{path}?{urllib.parse.urlencode({'done': done})}")

    @router.post(f"{CLUSTERS}/{{cluster_id}}/grants")
    async def create_grant(
        cluster_id: str,
        request: Request,
        db: Db,
        state: State,
        issuer: Issuer,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        email: Annotated[str, Form(max_length=320)] = "",
        role: Annotated[str, Form(max_length=64)] = "",
        scope: Annotated[str, Form(max_length=64)] = "",
        namespace: Annotated[str, Form(max_length=253)] = "",
    ) -> Response:
        form = {"email": email, "role": role, "scope": scope, "namespace": namespace.strip()}

        async def create(access: ClusterAccess, cluster: Cluster) -> str:
            body = GrantCreate(
                email=email.strip() or None,
                role=role,
                scope=scope or None,
                namespace=form["namespace"] or None,
            )
            if body.email is None and access.caller.actor.is_admin:
                raise ValidationFailed(
                    "choose the member to grant access to", details={"field": "email"}
                )
            created = await access.create_grant(cluster.id, body)
            return "created" if created.created else "exists"

        return await write(
            request,
            db,
            state,
            issuer,
            cluster_id,
            csrf_token,
            create,
            what="The grant was not created",
            form=form,
        )

    @router.post(f"{CLUSTERS}/{{cluster_id}}/grants/{{grant_id}}/delete")
    async def delete_grant(
        cluster_id: str,
        grant_id: str,
        request: Request,
        db: Db,
        state: State,
        issuer: Issuer,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        async def delete(access: ClusterAccess, cluster: Cluster) -> str:
            await access.delete_grant(cluster.id, grant_id)
            return "deleted"

        return await write(
            request,
            db,
            state,
            issuer,
            cluster_id,
            csrf_token,
            delete,
            what="The grant was not deleted",
        )

    @router.post(f"{CLUSTERS}/{{cluster_id}}/revoke-all")
    async def revoke_all(
        cluster_id: str,
        request: Request,
        db: Db,
        state: State,
        issuer: Issuer,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        confirm_name: Annotated[str, Form(max_length=253)] = "",
    ) -> Response:
        async def revoke(access: ClusterAccess, cluster: Cluster) -> str:
            require_admin(access.caller.actor, "revoke cluster access")
            if confirm_name.strip() != cluster.name:
                typed = (
                    f"you typed {confirm_name.strip()!r}"
                    if confirm_name.strip()
                    else ("you typed nothing")
                )
                raise _WrongName(
                    f"{typed}, not the cluster's name {cluster.name!r}, so nothing was "
                    "revoked. Type the name exactly to confirm"
                )
            await access.revoke_all(cluster.id)
            return "revoked"

        return await write(
            request,
            db,
            state,
            issuer,
            cluster_id,
            csrf_token,
            revoke,
            what="Nothing was revoked",
        )

    @router.post(f"{CLUSTERS}/{{cluster_id}}/kubeconfig")
    async def kubeconfig(
        cluster_id: str,
        request: Request,
        db: Db,
        state: State,
        issuer: Issuer,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        async def download(access: ClusterAccess, cluster: Cluster) -> Response:
            return kubeconfig_response(await access.kubeconfig(cluster.id))

        return await write(
            request,
            db,
            state,
            issuer,
            cluster_id,
            csrf_token,
            download,
            what="No kubeconfig was made",
        )

    return router


async def _may_take_admin_kubeconfig(accounts: ServiceAccounts, cluster_id: str) -> bool:
    """Whether the view links to the admin kubeconfig: by the rule of the download itself."""
    try:
        await accounts.admin_kubeconfig_cluster(cluster_id)
    except KubegateError:
        return False
    return True


class _WrongName(KubegateError):
    """Revoke all was confirmed with a name other than the cluster's."""

    status = 400
    code = "confirmation_mismatch"
    reason = "BadRequest"
