"""The portal's page for registering a cluster (ADR 0006): ``/portal/clusters/register``.

An admin names the cluster (a DNS-1123 label, checked by the browser with the field's
``pattern`` and again by the server) and its kind; the answer is the agent's install command
and manifest with the one-time agent credential, shown on that answer only (kubegate keeps
only its hash), with copy buttons (``static/copy_button.js``). Registering is
:func:`~kubegate.server.cluster_registration.register_cluster`, the REST API's own operation
(checks, transaction, the ``cluster.register`` audit event). A member is told they cannot
register clusters, and why.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from kubegate.agent.manifest import DEFAULT_NAMESPACE, install_manifest, render_yaml
from kubegate.domain.access import DNS1123_LABEL_MAX, ClusterKind
from kubegate.domain.agent_install import CA_FILE, install_command
from kubegate.errors import KubegateError, PermissionDenied, Unauthenticated
from kubegate.server.cluster_registration import register_cluster
from kubegate.server.deps import Db, State, public_base_url
from kubegate.server.portal_guard import (
    CLUSTERS,
    csrf_field,
    form_writer,
    page_caller,
    refusal,
    to_sign_in,
)
from kubegate.server.portal_render import PAGE_HEADERS, PortalTemplates
from kubegate.server.principal import Principal
from kubegate.server.routers.portal_access_pages import NAMESPACE_PATTERN

REGISTER = f"{CLUSTERS}/register"
CA_PATH = f"{REGISTER}/{CA_FILE}"
MEMBERS_CANNOT = (
    "Only organisation admins can register clusters, and you are a member. Ask one of your "
    "organisation's kubegate admins to register the cluster; it then appears on the Clusters "
    "page."
)


def register_pages_router(templates: PortalTemplates) -> APIRouter:
    """The register page's routes, rendering with ``templates``."""
    router = APIRouter(include_in_schema=False)

    def refused(request: Request, caller: Principal) -> Response:
        return templates.page(
            "access_refused.html",
            {
                "title": "Register a cluster",
                "caller": caller,
                "csrf_token": csrf_field(request),
                "heading": "You cannot register clusters",
                "message": MEMBERS_CANNOT,
                "back": CLUSTERS,
            },
            status=403,
        )

    def form_page(
        request: Request,
        caller: Principal,
        *,
        error: str | None = None,
        form: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        context: dict[str, Any] = {
            "title": "Register a cluster",
            "caller": caller,
            "csrf_token": csrf_field(request),
            "registered": None,
            "error": error,
            "name_pattern": NAMESPACE_PATTERN,
            "name_max": DNS1123_LABEL_MAX,
            "kinds": [kind.value for kind in ClusterKind],
            "form": {"name": "", "kind": ClusterKind.STANDARD.value} | (form or {}),
        }
        return templates.page("register.html", context, status=status)

    @router.get(REGISTER)
    async def register_page(request: Request) -> Response:
        try:
            caller = await page_caller(request)
        except Unauthenticated:
            return to_sign_in(request, REGISTER)
        if not caller.actor.is_admin:
            return refused(request, caller)
        return form_page(request, caller)

    @router.post(REGISTER)
    async def register(
        request: Request,
        db: Db,
        state: State,
        csrf_token: Annotated[str, Form(max_length=256)] = "",
        name: Annotated[str, Form(max_length=253)] = "",
        kind: Annotated[str, Form(max_length=64)] = ClusterKind.STANDARD.value,
    ) -> Response:
        caller = await form_writer(request, templates, csrf_token, REGISTER)
        if isinstance(caller, Response):
            return caller
        form = {"name": name.strip(), "kind": kind}
        try:  # a member is refused there, as by the API, and the refusal audited
            registered = await register_cluster(db, state.sessions, caller, form["name"], kind)
        except PermissionDenied:
            return refused(request, caller)
        except KubegateError as exc:
            message = refusal("The cluster was not registered", exc)
            return form_page(request, caller, error=message, form=form, status=exc.status)
        ca_pem = await state.gateway_ca.pem()
        server_url = public_base_url(request)
        cluster = registered.cluster
        credential = registered.agent_credential
        manifest = install_manifest(
            cluster_name=cluster.name,
            server_url=server_url,
            cluster_token=credential,
            ca_pem=ca_pem.decode() if ca_pem is not None else None,
        )
        context = {
            "title": f"{cluster.name} registered",
            "caller": caller,
            "csrf_token": csrf_field(request),
            "registered": cluster,
            "credential": credential,
            "command": install_command(
                cluster_name=cluster.name,
                server_url=server_url,
                agent_credential=credential,
                ca_file=CA_FILE if ca_pem is not None else None,
            ),
            "manifest": render_yaml(manifest),
            "ca_path": CA_PATH if ca_pem is not None else None,
            "ca_file": CA_FILE,
            "agent_namespace": DEFAULT_NAMESPACE,
            "server_url": server_url,
        }
        return templates.page("register.html", context)

    @router.get(CA_PATH)
    async def server_ca(state: State) -> Response:
        """The CA of this server's certificate, which the agent pins (public, as in
        ``/api/v1/info``)."""
        ca_pem = await state.gateway_ca.pem()
        if ca_pem is None:
            return Response(status_code=404, headers=PAGE_HEADERS)
        return Response(
            ca_pem,
            media_type="application/x-pem-file",
            headers={**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{CA_FILE}"'},
        )

    return router
