"""The portal's admin (break-glass) kubeconfig page (ADR 0006):
``/portal/clusters/{id}/admin-kubeconfig``.

For the people the REST route ``POST /api/v1/clusters/{id}/admin-kubeconfig`` serves: an
organisation admin, signed in as themself, who holds ``cluster-admin`` on the whole cluster
(``ServiceAccounts.admin_kubeconfig_cluster``, the one rule both use). The page warns what
the kubeconfig is (a bound token of the agent's ``kubegate-break-glass`` ServiceAccount,
straight to the apiserver, for when kubegate's gateway or the tunnel is down), that taking
it is recorded in the audit log where every admin sees it, and how long its token lasts;
its form (a ``POST`` with the session's CSRF token) downloads it. Anyone else gets a 403
page with the API's reason, and nothing is issued.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from kubegate.errors import Conflict, KubegateError, Unauthenticated, ValidationFailed
from kubegate.server.deps import Db, State
from kubegate.server.kube_tokens import Issuer, KubeTokenIssuer, kubeconfig_response
from kubegate.server.portal_format import spoken_duration
from kubegate.server.portal_guard import (
    CLUSTERS,
    csrf_field,
    form_writer,
    page_caller,
    refusal,
    to_sign_in,
)
from kubegate.server.portal_render import PortalTemplates
from kubegate.server.principal import Principal
from kubegate.server.routers.service_accounts import EXPIRES_HEADER
from kubegate.server.service_accounts import (
    ADMIN_DEFAULT_SECONDS,
    BREAK_GLASS_NAME,
    MIN_SECONDS,
    ServiceAccounts,
    direct_target,
)
from kubegate.server.state import AppState
from kubegate.storage.models import Cluster

# The lifetimes the page offers, as far as the server's cap allows (and the cap itself).
DURATIONS = (600, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 12 * 3600, 86400)


def admin_kubeconfig_path(cluster_id: str) -> str:
    return f"{CLUSTERS}/{cluster_id}/admin-kubeconfig"


def duration_choices(default: int, maximum: int) -> list[tuple[int, str]]:
    """The duration ``<select>``'s options: the usual lifetimes up to ``maximum``, with the
    default and the maximum themselves always among them, shortest first."""
    values = {d for d in DURATIONS if MIN_SECONDS <= d <= maximum} | {default, maximum}
    return [(value, spoken_duration(value)) for value in sorted(values)]


def admin_kubeconfig_pages_router(templates: PortalTemplates) -> APIRouter:
    """The routes of these pages, rendering with ``templates``."""
    router = APIRouter(include_in_schema=False)

    def accounts(
        caller: Principal, db: Db, state: AppState, issuer: KubeTokenIssuer
    ) -> ServiceAccounts:
        return ServiceAccounts(db, state.sessions, state.settings, caller, state.tunnels, issuer)

    def refused(
        caller: Principal, request: Request, cluster_id: str, exc: KubegateError
    ) -> Response:
        heading = {403: "Not allowed", 404: "Cluster not found"}.get(
            exc.status, "No admin kubeconfig here"
        )
        return templates.page(
            "access_refused.html",
            {
                "title": heading,
                "caller": caller,
                "csrf_token": csrf_field(request),
                "heading": heading,
                "message": refusal("You cannot take the admin kubeconfig", exc)
                if exc.status == 403
                else refusal(heading, exc),
                "back": f"{CLUSTERS}/{cluster_id}" if exc.status != 404 else CLUSTERS,
            },
            status=exc.status,
        )

    def page_context(
        request: Request, caller: Principal, state: AppState, cluster: Cluster, error: str | None
    ) -> dict[str, Any]:
        maximum = state.settings.admin_kubeconfig_max_seconds
        default = min(ADMIN_DEFAULT_SECONDS, maximum)
        try:
            server: str | None = direct_target(cluster).server
            unknown_server = None
        except Conflict as exc:
            server, unknown_server = None, refusal("It cannot be issued yet", exc)
        return {
            "title": f"{cluster.name} · Admin kubeconfig",
            "caller": caller,
            "csrf_token": csrf_field(request),
            "cluster": cluster,
            "online": state.tunnels.is_online(cluster.id),
            "server": server,
            "unknown_server": unknown_server,
            "break_glass": BREAK_GLASS_NAME,
            "default_seconds": default,
            "default_words": spoken_duration(default),
            "maximum_words": spoken_duration(maximum),
            "durations": duration_choices(default, maximum),
            "expires_if_now": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=default),
            "error": error,
        }

    @router.get(f"{CLUSTERS}/{{cluster_id}}/admin-kubeconfig")
    async def admin_kubeconfig_page(
        cluster_id: str, request: Request, db: Db, state: State, issuer: Issuer
    ) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, admin_kubeconfig_path(cluster_id))
        try:
            cluster = await accounts(caller, db, state, issuer).admin_kubeconfig_cluster(cluster_id)
        except KubegateError as exc:
            return refused(caller, request, cluster_id, exc)
        return templates.page(
            "admin_kubeconfig.html", page_context(request, caller, state, cluster, None)
        )

    @router.post(f"{CLUSTERS}/{{cluster_id}}/admin-kubeconfig")
    async def admin_kubeconfig_download(
        cluster_id: str,
        request: Request,
        db: Db,
        state: State,
        issuer: Issuer,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        duration_seconds: Annotated[str, Form(max_length=32)] = "",
    ) -> Response:
        caller = await form_writer(
            request, templates, csrf_token, admin_kubeconfig_path(cluster_id)
        )
        if isinstance(caller, Response):
            return caller
        service = accounts(caller, db, state, issuer)
        try:
            text = duration_seconds.strip()
            if text and not text.isdecimal():
                raise ValidationFailed(
                    f"the duration {text[:32]!r} is not a number of seconds: choose one of the "
                    "page's durations",
                    details={"field": "duration_seconds"},
                )
            issued, expires_at = await service.admin_kubeconfig(
                cluster_id, int(text) if text else None
            )
        except KubegateError as exc:
            try:  # the page again, saying why, for whom it is for; else the refusal
                cluster = await service.admin_kubeconfig_cluster(cluster_id)
            except KubegateError as not_theirs:
                return refused(caller, request, cluster_id, not_theirs)
            message = refusal("No admin kubeconfig was issued", exc)
            context = page_context(request, caller, state, cluster, message)
            return templates.page("admin_kubeconfig.html", context, status=exc.status)
        response = kubeconfig_response(issued)
        response.headers[EXPIRES_HEADER] = expires_at.isoformat().replace("+00:00", "Z")
        return response

    return router
