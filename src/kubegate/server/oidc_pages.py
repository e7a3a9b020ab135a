"""The pages a person meets when an SSO sign-in does not end in the portal.

Plain HTML, no script: the charset travels in ``Content-Type``, every value is escaped, and
the headers forbid caching (the callback URL carried a one-time code), framing, referrers
and any sub-resource but this origin's stylesheets: the page links the portal's
(``/portal/static/portal.css``). What a page says comes from the :class:`SignInFailed` it renders;
a failed token verification shows only a generic sentence and the reference id under which
the server logged the details.
"""

from __future__ import annotations

import html
import urllib.parse

from fastapi.responses import HTMLResponse, RedirectResponse

from kubegate.auth.oidc_errors import SignInFailed, SsoNotConfigured

HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'",
}
GENERIC = (
    "kubegate could not verify the answer of the sign-in provider, so it did not sign you in. "
    "Start again; if this goes on, give your kubegate administrator the reference below."
)
LOGIN_PATH = "/auth/oidc/login"


def failure_page(error: SignInFailed, *, reference: str, next_path: str = "/") -> HTMLResponse:
    """The page for ``error`` with its status; ``reference`` is the request id in the log."""
    message = error.message if error.shown else GENERIC
    again = ""
    if not isinstance(error, SsoNotConfigured):
        href = f"{LOGIN_PATH}?{urllib.parse.urlencode({'next': next_path})}"
        again = f'<p><a class="kg-button" href="{html.escape(href)}">Sign in again</a></p>\n'
    body = (
        "<!doctype html>\n"
        '<html lang="en">\n'
        f"<head><title>{html.escape(error.title)} · kubegate</title>"
        '<link rel="stylesheet" href="/portal/static/portal.css"></head>\n'
        "<body>\n"
        f'<main class="kg-message kg-message-error" data-error="{html.escape(error.code)}">\n'
        f"<h1>{html.escape(error.title)}</h1>\n"
        f"<p>{html.escape(message)}</p>\n"
        f"{again}"
        f'<p class="kg-reference">Reference: <code>{html.escape(reference)}</code></p>\n'
        "</main>\n"
        "</body>\n"
        "</html>\n"
    )
    return HTMLResponse(body, status_code=error.status, headers=HEADERS)


def redirect(location: str) -> RedirectResponse:
    """A 302 to ``location`` with this module's headers (nothing cached, no referrer)."""
    return RedirectResponse(location, status_code=302, headers=HEADERS)
