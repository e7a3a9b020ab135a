"""Service accounts for automation and the admin (break-glass) kubeconfig, over REST.

Thin: :class:`~kubegate.server.service_accounts.ServiceAccounts` checks and does the work.
Kubeconfigs answer YAML (``application/yaml``, never cached) with the token's expiry in the
``Kubegate-Token-Expires-At`` header.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select

from kubegate.domain.access import require_admin
from kubegate.server.deps import ApiCaller, Db, State, error_responses
from kubegate.server.kube_tokens import (
    IssuedKubeconfig,
    Issuer,
    YamlResponse,
    kubeconfig_response,
    kubeconfig_responses,
)
from kubegate.server.pagination import (
    PageRequest,
    next_cursor,
    page_request,
    paginate_newest_first,
)
from kubegate.server.routers.clusters import get_cluster
from kubegate.server.schemas import Page
from kubegate.server.schemas.service_accounts import (
    AdminKubeconfigIssued,
    AdminKubeconfigRequest,
    ApiServerSet,
    ServiceAccountCreate,
    ServiceAccountKubeconfigRequest,
    ServiceAccountOut,
)
from kubegate.server.service_accounts import ADMIN_ACTION, ServiceAccounts
from kubegate.storage.models import AuditEvent

router = APIRouter(prefix="/api/v1/clusters/{cluster_id}", tags=["service accounts"])

EXPIRES_HEADER = "Kubegate-Token-Expires-At"


async def service_accounts(
    caller: ApiCaller, db: Db, state: State, issuer: Issuer
) -> ServiceAccounts:
    """FastAPI dependency: the service-account operations for a bearer-token caller."""
    return ServiceAccounts(db, state.sessions, state.settings, caller, state.tunnels, issuer)


Accounts = Annotated[ServiceAccounts, Depends(service_accounts)]


def _yaml(issued: IssuedKubeconfig, expires_at: dt.datetime) -> YamlResponse:
    response = kubeconfig_response(issued)
    response.headers[EXPIRES_HEADER] = expires_at.isoformat().replace("+00:00", "Z")
    return response


@router.get(
    "/service-accounts",
    summary="Managed service accounts on a cluster, with their status (admin)",
    responses=error_responses(401, 403, 404, 409),
)
async def list_service_accounts(
    cluster_id: str, accounts: Accounts, page: Annotated[PageRequest, Depends(page_request)]
) -> Page[ServiceAccountOut]:
    return await accounts.list(cluster_id, page)


@router.post(
    "/service-accounts",
    status_code=201,
    summary="Create a ServiceAccount on the cluster and bind it to a role (admin)",
    description="The agent creates the ServiceAccount and a RoleBinding in its namespace "
    "(scope namespace) or a ClusterRoleBinding (scope cluster), repairs them if they drift, "
    "and reports the status (pending → applied or failed).",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def create_service_account(
    cluster_id: str, body: ServiceAccountCreate, accounts: Accounts
) -> ServiceAccountOut:
    return await accounts.create(cluster_id, body)


@router.delete(
    "/service-accounts/{service_account_id}",
    status_code=204,
    summary="Delete a managed service account (admin)",
    description="Its kube tokens (kubeconfigs through the gateway) stop working at once; the "
    "agent deletes the ServiceAccount and its binding, and the direct (bound) tokens die "
    "with the ServiceAccount.",
    responses=error_responses(401, 403, 404, 409),
)
async def delete_service_account(
    cluster_id: str, service_account_id: str, accounts: Accounts
) -> Response:
    await accounts.delete(cluster_id, service_account_id)
    return Response(status_code=204)


@router.post(
    "/service-accounts/{service_account_id}/kubeconfig",
    response_class=YamlResponse,
    summary="A kubeconfig acting as the service account (admin)",
    description="Through kubegate's proxy by default; with direct: true, straight to the "
    "apiserver with a bound token from the TokenRequest API (the agent must be connected to "
    "mint it; the account must be applied). Audited as service_account.kubeconfig.",
    responses=kubeconfig_responses(401, 403, 404, 409, 502),
)
async def service_account_kubeconfig(
    cluster_id: str,
    service_account_id: str,
    accounts: Accounts,
    body: ServiceAccountKubeconfigRequest | None = None,
) -> YamlResponse:
    issued, expires_at = await accounts.kubeconfig(
        cluster_id, service_account_id, body or ServiceAccountKubeconfigRequest()
    )
    return _yaml(issued, expires_at)


@router.post(
    "/admin-kubeconfig",
    response_class=YamlResponse,
    summary="The admin (break-glass) kubeconfig: straight to the apiserver as cluster-admin",
    description="Only for organisation admins who hold a cluster-admin grant on the whole "
    "cluster, signed in as themselves (not with an access key); everyone else gets 403 with "
    "the reason. A short-lived bound token (default 1 h) of the agent's kubegate-break-glass "
    "ServiceAccount; it works while kubegate is down. Every issuance and refusal is audited "
    "as cluster.admin_kubeconfig.",
    responses=kubeconfig_responses(401, 403, 404, 409, 502),
)
async def admin_kubeconfig(
    cluster_id: str, accounts: Accounts, body: AdminKubeconfigRequest | None = None
) -> YamlResponse:
    issued, expires_at = await accounts.admin_kubeconfig(
        cluster_id, (body or AdminKubeconfigRequest()).duration_seconds
    )
    return _yaml(issued, expires_at)


@router.get(
    "/admin-kubeconfigs",
    summary="Every admin kubeconfig issued (or refused) for the cluster, newest first (admin)",
    responses=error_responses(401, 403, 404),
)
async def list_admin_kubeconfigs(
    cluster_id: str,
    caller: ApiCaller,
    db: Db,
    page: Annotated[PageRequest, Depends(page_request)],
) -> Page[AdminKubeconfigIssued]:
    cluster = await get_cluster(db, caller.actor, cluster_id)
    require_admin(caller.actor, "see who took admin kubeconfigs")
    query = select(AuditEvent).where(
        AuditEvent.org_id == cluster.org_id,
        AuditEvent.cluster_id == cluster.id,
        AuditEvent.action == ADMIN_ACTION,
    )
    statement = paginate_newest_first(query, page, AuditEvent.created_at, AuditEvent.id)
    rows, cursor = next_cursor(list((await db.scalars(statement)).all()), page)
    return Page[AdminKubeconfigIssued](
        items=[
            AdminKubeconfigIssued(
                issued_at=event.created_at,
                actor_user_id=event.actor_user_id,
                actor_email=event.actor_email,
                cluster_id=event.cluster_id,
                result=event.result,
                expires_at=event.detail.get("expires_at"),
                detail=str(event.detail.get("message", "")),
            )
            for event in rows
        ],
        next_cursor=cursor,
    )


@router.put(
    "/api-server",
    status_code=204,
    summary="Set (or clear, url null) the apiserver URL and CA direct kubeconfigs use (admin)",
    description="Overrides what the agent reports (its kubeconfig's server, or "
    "--api-server-url); needed when the agent's own address is in-cluster only.",
    responses=error_responses(401, 403, 404, 422),
)
async def set_api_server(cluster_id: str, body: ApiServerSet, accounts: Accounts) -> Response:
    await accounts.set_api_server(cluster_id, body.url, body.ca_pem)
    return Response(status_code=204)
