"""Cluster Access on the REST API: grants, revoke-all, kube tokens and kubeconfigs for
bearer-token callers.

The operations live in ``server/access.py``, shared with the portal (the grant routes are
built once, by ``grant_routes.py``; kube tokens and kubeconfigs in ``server/kube_tokens.py``,
which needs no ORM session); these routes only authenticate, shape the HTTP answer and
document it. Every route 404s while the access
gateway is disabled.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from kubegate.domain.access import NO_ACCESS
from kubegate.server.access import api_cluster_access
from kubegate.server.deps import ApiCaller, Gateway, error_responses
from kubegate.server.kube_tokens import (
    NO_STORE,
    Issuer,
    YamlResponse,
    kubeconfig_response,
    kubeconfig_responses,
)
from kubegate.server.routers.grant_routes import grant_routes
from kubegate.server.schemas.access import KubeTokenOut, KubeTokenRequest

router = APIRouter(prefix="/api/v1/clusters/{cluster_id}", tags=["access"], dependencies=[Gateway])

_NO_ACCESS = (
    f'403 when the caller holds no grant on the cluster ("{NO_ACCESS}"; admins need a grant '
    "too), 409 for a sandbox cluster, 429 with Retry-After "
    "when the caller mints too fast (kube_token_mints_per_minute)."
)


@router.post(
    "/k8s-token",
    summary="Mint a short-lived kube token for the Kubernetes API proxy",
    description="For the kubectl exec plugin: token and expires_at are an ExecCredential's "
    "status.token and status.expirationTimestamp. Needs a grant on the cluster, whatever its "
    "status (kubectl gets Forbidden until the grant is applied). The body may be omitted; "
    "ttl_seconds can only shorten the server's lifetime. " + _NO_ACCESS,
    responses=error_responses(401, 403, 404, 409, 422, 429),
)
async def mint_kube_token(
    cluster_id: str,
    caller: ApiCaller,
    issuer: Issuer,
    response: Response,
    body: KubeTokenRequest | None = None,
) -> KubeTokenOut:
    ttl_seconds = body.ttl_seconds if body else None
    minted = await issuer.mint(caller, cluster_id, ttl_seconds=ttl_seconds, via="k8s-token")
    response.headers.update(NO_STORE)
    return KubeTokenOut(
        token=minted.token,
        expires_at=minted.expires_at,
        cluster_id=minted.cluster_id,
        server=issuer.server(minted.cluster_id),
    )


@router.post(
    "/kubeconfig",
    summary="A complete kubeconfig for the cluster, with a short-lived kube token embedded",
    description="Mints a kube token exactly as /k8s-token does (same checks, same rate "
    "limit) and answers a kubeconfig (YAML) whose cluster, user and context are named "
    "kubegate-<cluster name>, with the context current and the gateway's CA embedded when "
    "TLS is on. " + _NO_ACCESS,
    response_class=YamlResponse,
    responses=kubeconfig_responses(401, 403, 404, 409, 429),
)
async def kubeconfig(cluster_id: str, caller: ApiCaller, issuer: Issuer) -> YamlResponse:
    return kubeconfig_response(await issuer.kubeconfig(caller, cluster_id))


router.include_router(grant_routes(Depends(api_cluster_access)))
