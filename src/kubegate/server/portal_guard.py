"""Who is asking for a portal page, and where they go when they may not have it.

Every page route starts with :func:`page_caller` (a read) or :func:`form_writer` (a form
``POST``): without a valid session the browser goes to sign-in (an htmx request gets
``HX-Redirect``, so a page left open goes by itself once its session times out), saying why
when the session it had has ended; a form post without the page's CSRF token changes nothing
and says so.
"""

from __future__ import annotations

import urllib.parse

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from kubegate.errors import KubegateError, PermissionDenied, Unauthenticated
from kubegate.server.deps import portal_session
from kubegate.server.portal_format import as_sentence
from kubegate.server.portal_render import PAGE_HEADERS, PortalTemplates
from kubegate.server.principal import Principal
from kubegate.server.sessions import SESSION_COOKIE, clear_session_cookie, csrf_token_for

SIGN_IN = "/portal/sign-in"
CLUSTERS = "/portal/clusters"
NO_CSRF = (
    "This form was not sent from kubegate's own page (its security token is missing or "
    "wrong), so nothing was changed. Reload the page and try again."
)


def redirect(location: str, headers: dict[str, str] | None = None) -> RedirectResponse:
    """A 303 to ``location`` with the portal's headers."""
    return RedirectResponse(location, status_code=303, headers={**PAGE_HEADERS, **(headers or {})})


def refusal(what: str, exc: KubegateError) -> str:
    """What a page says when an operation is refused: ``The grant was not created: Namespace
    'x' must ….`` (``what``, then the error's message as a sentence)."""
    return f"{what}: {as_sentence(exc.message)}."


def sign_in_url(next_path: str, ended: str | None = None) -> str:
    query = {"next": next_path} | ({"ended": ended} if ended else {})
    return f"{SIGN_IN}?{urllib.parse.urlencode(query)}"


async def page_caller(
    request: Request, csrf: str | None = None, *, touch: bool = True
) -> Principal:
    """The session's principal (``touch=False`` for a page polling itself, which is no use
    of the session). Raises Unauthenticated without one, PermissionDenied for a wrong CSRF."""
    return await portal_session(request, request.cookies.get(SESSION_COOKIE), csrf, touch=touch)


def csrf_field(request: Request) -> str:
    """The CSRF token a page's forms carry, for the session the request came with."""
    return csrf_token_for(request.cookies[SESSION_COOKIE])


def to_sign_in(request: Request, next_path: str) -> Response:
    """Where a request without a valid session goes: sign-in, saying so when it had one."""
    had_session = bool(request.cookies.get(SESSION_COOKIE))
    location = sign_in_url(next_path, "expired" if had_session else None)
    if request.headers.get("HX-Request") == "true":
        response: Response = Response(status_code=401, headers={"HX-Redirect": location})
    else:
        response = redirect(location)
    if had_session:
        clear_session_cookie(response)
    return response


async def form_writer(
    request: Request, templates: PortalTemplates, csrf_token: str, back: str
) -> Principal | Response:
    """The caller of a page's form ``POST``, or the response to send instead: sign-in
    without a session, a 403 page saying nothing changed without the page's CSRF token."""
    try:
        return await page_caller(request, csrf_token or None)
    except Unauthenticated:
        return to_sign_in(request, back)
    except PermissionDenied:
        return templates.page(
            "access_refused.html",
            {
                "title": "Not changed",
                "caller": None,
                "csrf_token": "",
                "heading": "Nothing was changed",
                "message": NO_CSRF,
                "back": back,
            },
            status=403,
        )
