"""``GET /metrics``: the server's Prometheus metrics (``docs/metrics.md``), in the text format.

Protected by the ``metrics`` setting: ``open`` serves anyone who reaches the port, ``token``
wants ``Authorization: Bearer <metrics_token>`` (compared in constant time; a missing or
wrong token is 401), ``off`` answers 404 like a route that does not exist.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kubegate.errors import NotFound, Unauthenticated
from kubegate.server.deps import State

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: State) -> Response:
    settings = state.settings
    access = settings.metrics_access()
    if access == "off":
        raise NotFound("metrics are turned off on this server (setting metrics)")
    if access == "token":
        assert settings.metrics_token is not None  # the settings refuse token without one
        scheme, _, given = (request.headers.get("authorization") or "").partition(" ")
        expected = settings.metrics_token.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise Unauthenticated(
                "send the metrics token (setting metrics_token) as 'Authorization: Bearer …'"
            )
    await state.metrics.refresh(state.sessions)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
