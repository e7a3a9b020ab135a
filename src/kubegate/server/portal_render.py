"""How the portal's pages are made: Jinja2 templates, the portal's headers, its own assets.

Every page is rendered on the server (ADR 0006) from ``server/templates/portal/`` with
autoescaping on and undefined names an error, and sent with headers that allow nothing but
this origin's scripts and stylesheets (no inline script, no inline style, no framing, forms
posting only back here), no referrer and no caching (a page shows who is signed in). The
assets (``server/static/``: the stylesheet, the vendored htmx, its licence) are served by
kubegate itself, never a CDN, with ``nosniff``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from kubegate.server.portal_format import exact_time, relative_time

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}
STATIC_PATH = "/portal/static"


class PortalTemplates:
    """The portal's template environment, built once per app by ``create_app``."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("kubegate.server", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals["static"] = STATIC_PATH
        self._env.filters["relative"] = relative_time
        self._env.filters["exact"] = exact_time
        self._env.filters["iso"] = lambda moment: moment.astimezone(dt.UTC).isoformat()

    def render(self, name: str, context: Mapping[str, Any]) -> str:
        """The template ``portal/<name>`` rendered with ``context`` (and ``now``)."""
        values = {"now": dt.datetime.now(dt.UTC), **context}
        return self._env.get_template(f"portal/{name}").render(values)

    def page(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """A page (or an htmx fragment) with the portal's headers."""
        return HTMLResponse(
            self.render(name, context),
            status_code=status,
            headers={**PAGE_HEADERS, **(headers or {})},
        )


class PortalStatic(StaticFiles):
    """The portal's assets from the installed package, sent with ``nosniff`` and revalidated
    by ETag (they change with an upgrade, under the same name)."""

    def __init__(self) -> None:
        super().__init__(packages=[("kubegate.server", "static")])

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
