"""Request and response shapes of the REST and portal APIs, one module per area."""

from kubegate.server.schemas.common import ErrorDetail, ErrorResponse, Page, Strict

__all__ = ["ErrorDetail", "ErrorResponse", "Page", "Strict"]
