"""Liveness and readiness."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from kubegate.errors import failure_reason
from kubegate.server.deps import State

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready to serve: the database answers",
    responses={503: {"description": "The database does not answer."}},
)
async def readyz(state: State) -> JSONResponse:
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        # Said in the log (a probe's answer carries no detail: it is unauthenticated).
        log.warning("not ready: the database does not answer: %s", failure_reason(exc))
        return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "up"})
