"""Rendering errors as ``{"error": {"code", "message", "details"}}``: the only place that does.

Foreign exceptions become KubegateErrors here at the boundary: request validation (422),
malformed JSON (400), unknown routes (404), a database that went away (503), and anything
unexpected (500, logged with a request id, never with request secrets).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from kubegate.errors import KubegateError, RateLimited

log = logging.getLogger("kubegate.server")

DATABASE_DOWN = "the database is unavailable right now; nothing was changed, retry shortly"
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The REST API's error document."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status)


def error_response(exc: KubegateError) -> JSONResponse:
    """The REST rendering of an expected failure (also a refused WebSocket upgrade's body)."""
    response = _response(exc.status, exc.code, exc.message, exc.details)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _kubegate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KubegateError)
    return error_response(exc)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return _response(
            400, "invalid_json", "the request body is not valid JSON; send a JSON object"
        )
    fields = []
    for e in errors:
        where = _field(tuple(e.get("loc", ())))
        message = str(e.get("msg", "invalid"))
        if e.get("type") == "extra_forbidden":
            message = "unknown field; remove it"
        elif e.get("type") == "missing":
            message = "this field is required"
        fields.append({"field": where, "message": message})
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return _response(422, "validation_failed", f"invalid request: {summary}", {"fields": fields})


def _allowed_methods(request: Request) -> str:
    """Every method the API documents for this path (from the cached OpenAPI document, which
    lists them all; Starlette's own Allow names only the first matching route's)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi()["paths"].items():
        regex, _, _ = compile_path(template)
        if regex.match(request.url.path):
            methods |= {method.upper() for method in operations}
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = str(exc.detail)
    details: dict[str, Any] = {}
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        # Routes left out of the OpenAPI document (the OAuth device endpoints, HTML pages)
        # keep the Allow header Starlette gave.
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}"
        details = {"allowed": headers["Allow"].split(", ")}
    elif exc.status_code == 413:
        details = {"limitBytes": getattr(exc, "limit_bytes", None)}
    response = _response(exc.status_code, code, message, details)
    response.headers.update(headers)
    return response


def _connection_lost(exc: Exception) -> bool:
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | ConnectionError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DataError):
        # PostgreSQL refuses some text (a NUL character, an over-long value): bad input.
        return _response(
            400,
            "invalid_request",
            "a value in the request cannot be stored (it contains a NUL character or is too "
            "long); check the fields and the ids in the path",
        )
    if not _connection_lost(exc):
        return await _unexpected(request, exc)
    log.warning("database unavailable: %s", type(exc).__name__)
    response = _response(503, "unavailable", DATABASE_DOWN)
    response.headers["Retry-After"] = "5"
    return response


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    log.exception(
        "unhandled error in %s %s (request %s)", request.method, request.url.path, request_id
    )
    return _response(
        500,
        "internal_error",
        f"internal error; the server log has the details under request id {request_id}",
    )


def install(app: FastAPI) -> None:
    """Register every handler on ``app``."""
    app.add_exception_handler(KubegateError, _kubegate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeout, _database_error)
    app.add_exception_handler(ConnectionError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
