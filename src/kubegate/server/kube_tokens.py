"""Issuing kube tokens over HTTP: bare (``k8s-token``) or in a kubeconfig.

:class:`KubeTokenIssuer` puts what a response needs around a mint of
:class:`~kubegate.server.minter.Minter` (which checks, rate-limits, writes and audits it): the
cluster's URL on the Kubernetes API proxy and, for a kubeconfig, the CA it trusts
(:class:`GatewayCA`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Response

from kubegate.kube.kubeconfig import build_kubeconfig, entry_name, render_kubeconfig
from kubegate.server.deps import app_state, error_responses
from kubegate.server.minter import MintedToken, Minter, MintRequest
from kubegate.server.principal import Principal
from kubegate.server.state import AppState
from kubegate.server.tls import GatewayCA


@dataclass(frozen=True, slots=True)
class IssuedKubeconfig:
    """A kubeconfig with an embedded kube token, and the file name to save it under."""

    filename: str
    text: str


class KubeTokenIssuer:
    """Mints kube tokens, bare or in a kubeconfig, with one process's minter, gateway CA and
    proxy URL (``proxy_url``: the proxy's base URL as clients reach it)."""

    def __init__(self, minter: Minter, ca: GatewayCA, proxy_url: str) -> None:
        self.minter = minter
        self.ca = ca
        self.proxy_url = proxy_url

    def server(self, cluster_id: str) -> str:
        """The cluster's URL on the Kubernetes API proxy."""
        return f"{self.proxy_url}/clusters/{cluster_id}"

    async def mint(
        self, caller: Principal, cluster_id: str, *, ttl_seconds: int | None = None, via: str
    ) -> MintedToken:
        """A kube token for the caller on the cluster (:meth:`Minter.mint` has the checks,
        in order); ``via`` names the endpoint in the audit event."""
        return await self.minter.mint(MintRequest(caller, cluster_id, ttl_seconds, via))

    async def kubeconfig(self, caller: Principal, cluster_id: str) -> IssuedKubeconfig:
        """A complete kubeconfig for the cluster around a freshly minted kube token (same
        checks and rate limit as :meth:`mint`), trusting the gateway's CA when TLS is on."""
        minted = await self.mint(caller, cluster_id, via="kubeconfig")
        config = build_kubeconfig(
            name=minted.cluster_name,
            server=self.server(cluster_id),
            ca_pem=await self.ca.pem(),
            token=minted.token,
        )
        return IssuedKubeconfig(
            filename=f"{entry_name(minted.cluster_name)}.kubeconfig",
            text=render_kubeconfig(config),
        )


def public_proxy_url(state: AppState) -> str:
    """The proxy's base URL as clients reach it, with the port the running proxy really
    listens on (``Settings.proxy_url``)."""
    return state.settings.proxy_url(bound_port=state.proxy.port)


async def kube_token_issuer(request: Request) -> KubeTokenIssuer:
    """FastAPI dependency: the issuer of this process, at the proxy's public URL."""
    state = app_state(request)
    return KubeTokenIssuer(state.minter, state.gateway_ca, public_proxy_url(state))


Issuer = Annotated[KubeTokenIssuer, Depends(kube_token_issuer)]


NO_STORE = {"Cache-Control": "no-store"}


class YamlResponse(Response):
    """A YAML document (a kubeconfig)."""

    media_type = "application/yaml"


def kubeconfig_response(issued: IssuedKubeconfig) -> YamlResponse:
    """The download: YAML, saved as ``kubegate-<cluster>.kubeconfig``, never cached."""
    return YamlResponse(
        issued.text,
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="{issued.filename}"',
        },
    )


def kubeconfig_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` of a kubeconfig route (``response_class=YamlResponse``): the
    YAML document, and the JSON error body for ``statuses`` (plus ``deps.ALWAYS``).

    The error bodies are spelled out rather than given as ``model``, which FastAPI would file
    under the route's YAML media type.
    """
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
    return {
        200: {
            "description": "A kubeconfig (YAML) with one cluster, user and context named "
            "kubegate-<cluster name>, the context current, and a kube token embedded.",
        },
        **{status: {"content": error} for status in error_responses(*statuses)},
    }
