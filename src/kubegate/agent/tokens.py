"""Bound ServiceAccount tokens for the server: the TokenRequest API, never a token Secret.

The server asks over the control stream (``TokenRequest``) when someone takes a kubeconfig
that goes straight to the apiserver: a managed account's (``serviceaccount kubeconfig
--direct``) or the admin (break-glass) kubeconfig's. :class:`TokenMinter` answers each one
with a ``TokenAnswer``: the token and its expiry, or why there is none, in words a person can
act on. It mints only for

- a ServiceAccount in the reconciler's current desired set that exists with kubegate's
  ``app.kubernetes.io/managed-by`` label (what the server manages, never anything else), or
- the break-glass account, ``kubegate-break-glass`` in the agent's own namespace, which it
  first makes sure of: the ServiceAccount and a ClusterRoleBinding ``kubegate-break-glass``
  to ``cluster-admin``. Those carry ``app.kubernetes.io/part-of=kubegate`` and
  ``kubegate.io/break-glass=true`` but not the managed-by label, so the reconciler, which
  deletes every managed object outside the desired set, leaves them alone.

A bound token lives as long as its ServiceAccount: deleting the account ends it. Tokens are
never logged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import httpx
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccount, ServiceAccountToken
from lightkube.resources.rbac_authorization_v1 import ClusterRoleBinding

from kubegate.agent.desired import (
    RBAC_GROUP,
    SERVICE_ACCOUNT_KIND,
    Manages,
    Manifest,
    is_owned,
)
from kubegate.agent.kube_errors import describe
from kubegate.tunnel.control import TokenAnswer, TokenRequest

log = logging.getLogger(__name__)

BREAK_GLASS_NAME = "kubegate-break-glass"
"""The break-glass ServiceAccount's name, and its ClusterRoleBinding's."""
BREAK_GLASS_LABEL = "kubegate.io/break-glass"
BREAK_GLASS_LABELS = {"app.kubernetes.io/part-of": "kubegate", BREAK_GLASS_LABEL: "true"}
BREAK_GLASS_ROLE = "cluster-admin"
TOKEN_TIMEOUT = 10.0
"""How long one token request may take, API calls included (the server waits 15 s)."""


class TokenRefused(Exception):
    """A token request the agent will not serve; the message says why, for the person."""


def break_glass_account(namespace: str) -> Manifest:
    """The break-glass ServiceAccount in the agent's namespace."""
    return {
        "apiVersion": "v1",
        "kind": SERVICE_ACCOUNT_KIND,
        "metadata": {
            "name": BREAK_GLASS_NAME,
            "namespace": namespace,
            "labels": dict(BREAK_GLASS_LABELS),
        },
    }


def break_glass_binding(namespace: str) -> Manifest:
    """The ClusterRoleBinding that makes the break-glass account a cluster admin."""
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": BREAK_GLASS_NAME, "labels": dict(BREAK_GLASS_LABELS)},
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": BREAK_GLASS_ROLE},
        "subjects": [
            {"kind": SERVICE_ACCOUNT_KIND, "name": BREAK_GLASS_NAME, "namespace": namespace}
        ],
    }


def is_break_glass(obj: Manifest) -> bool:
    """Whether kubegate made ``obj`` as the break-glass account or its binding."""
    labels = obj.get("metadata", {}).get("labels") or {}
    return bool(labels.get(BREAK_GLASS_LABEL) == "true")


def rfc3339(moment: dt.datetime) -> str:
    """``moment`` as the apiserver writes timestamps (UTC, whole seconds, ``Z``)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenMinter:
    """Answers the server's token requests with the agent's own client (its ServiceAccount).

    ``manages`` is the reconciler's :meth:`~kubegate.agent.reconcile.Reconciler.manages`;
    ``namespace`` is the agent's own, the only one the break-glass account may live in.
    """

    def __init__(
        self,
        client: AsyncClient,
        manages: Manages,
        *,
        namespace: str,
        timeout: float = TOKEN_TIMEOUT,
    ) -> None:
        self._client = client
        self._manages = manages
        self._namespace = namespace
        self._timeout = timeout

    async def answer(self, request: TokenRequest) -> TokenAnswer:
        """The token for ``request``, or an answer saying why there is none; never raises
        for a refusal, a failed API call or a timeout."""
        account = f"{request.namespace}/{request.name}"
        try:
            async with asyncio.timeout(self._timeout):
                if request.break_glass:
                    await self._ensure_break_glass(request)
                else:
                    await self._check_managed(request)
                token, expires_at = await self._mint(request)
        except TimeoutError:
            error = (
                f"the Kubernetes API did not answer the token request for {account} within "
                f"{self._timeout:g} s"
            )
        except TokenRefused as exc:
            error = str(exc)
        except (ApiError, httpx.HTTPError) as exc:
            error = f"the Kubernetes API refused a token for {account}: {describe(exc)}"
        else:
            log.info(
                "service account token minted",
                extra={
                    "namespace": request.namespace,
                    "service_account": request.name,
                    "break_glass": request.break_glass,
                    "expires_at": expires_at,
                },
            )
            return TokenAnswer(request.request_id, token=token, expires_at=expires_at)
        log.warning(
            "service account token refused",
            extra={
                "namespace": request.namespace,
                "service_account": request.name,
                "break_glass": request.break_glass,
                "error": error,
            },
        )
        return TokenAnswer(request.request_id, error=error)

    async def _check_managed(self, request: TokenRequest) -> None:
        refusal = f"service account {request.namespace}/{request.name} is not managed by kubegate"
        if not self._manages(request.namespace, request.name):
            raise TokenRefused(refusal)
        try:
            found = await self._client.get(
                ServiceAccount, request.name, namespace=request.namespace
            )
        except ApiError as exc:
            if exc.status.code == 404:
                raise TokenRefused(f"{refusal} (it does not exist in the cluster yet)") from exc
            raise
        if not is_owned(found.to_dict()):
            raise TokenRefused(f"{refusal} (it lacks kubegate's label)")

    async def _ensure_break_glass(self, request: TokenRequest) -> None:
        """The break-glass account and its cluster-admin binding, made if missing (and put
        right if edited); idempotent."""
        if request.name != BREAK_GLASS_NAME or request.namespace != self._namespace:
            raise TokenRefused(
                f"a break-glass token is only for ServiceAccount "
                f"{self._namespace}/{BREAK_GLASS_NAME} (the agent's namespace); asked for "
                f"{request.namespace}/{request.name}"
            )
        account = break_glass_account(self._namespace)
        try:
            await self._client.create(ServiceAccount.from_dict(account))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            found = await self._client.get(
                ServiceAccount, BREAK_GLASS_NAME, namespace=self._namespace
            )
            if not is_break_glass(found.to_dict()):
                raise TokenRefused(_not_break_glass("ServiceAccount", self._namespace)) from exc
        binding = break_glass_binding(self._namespace)
        try:
            await self._client.create(ClusterRoleBinding.from_dict(binding))
        except ApiError as exc:
            if exc.status.code != 409:
                raise
            await self._repair_binding(binding)

    async def _repair_binding(self, binding: Manifest) -> None:
        current: dict[str, Any] = (
            await self._client.get(ClusterRoleBinding, BREAK_GLASS_NAME)
        ).to_dict()
        if not is_break_glass(current):
            raise TokenRefused(_not_break_glass("ClusterRoleBinding", None))
        if current.get("roleRef") != binding["roleRef"]:  # immutable: replace it
            await self._client.delete(ClusterRoleBinding, BREAK_GLASS_NAME)
            await self._client.create(ClusterRoleBinding.from_dict(binding))
        elif current.get("subjects") != binding["subjects"]:
            await self._client.replace(ClusterRoleBinding.from_dict(binding))

    async def _mint(self, request: TokenRequest) -> tuple[str, str]:
        answer = await self._client.create(
            ServiceAccountToken(
                # lightkube needs the metadata to build the subresource's path.
                metadata=ObjectMeta(name=request.name, namespace=request.namespace),
                spec=TokenRequestSpec(audiences=[], expirationSeconds=request.expiration_seconds),
            ),
            request.name,
            namespace=request.namespace,
        )
        status = answer.status
        if status is None or not status.token or status.expirationTimestamp is None:
            raise TokenRefused(
                f"the Kubernetes API answered the token request for "
                f"{request.namespace}/{request.name} without a token"
            )
        return status.token, rfc3339(status.expirationTimestamp)


def _not_break_glass(kind: str, namespace: str | None) -> str:
    where = f' in namespace "{namespace}"' if namespace else ""
    return (
        f'{kind} "{BREAK_GLASS_NAME}"{where} already exists and is not kubegate\'s break-glass '
        f"account (it lacks the label {BREAK_GLASS_LABEL}=true); kubegate leaves it alone"
    )
