"""The approval page of ``kubegate login --sso`` (``/device``): plain HTML, no script.

It looks and is served like the SSO sign-in's pages (:mod:`kubegate.server.oidc_pages`,
whose headers it shares): every value escaped, no script, no inline style (the Content
Security Policy allows neither, only this origin's stylesheets, forms posting back here and
no framing: an Approve button in someone else's frame would be a clickjacking target), never
cached. Its elements carry the ``kg-`` classes the portal's stylesheet will style.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from fastapi.responses import HTMLResponse

from kubegate.auth.device_codes import display_user_code
from kubegate.server.oidc_pages import HEADERS as PAGE_HEADERS

HEADERS = {**PAGE_HEADERS, "X-Frame-Options": "DENY"}


def _page(title: str, body: str, status: int = 200, kind: str = "") -> HTMLResponse:
    classes = "kg-message kg-device" + (f" kg-message-{kind}" if kind else "")
    document = (
        "<!doctype html>\n"
        '<html lang="en">\n'
        f"<head><title>{escape(title)} · kubegate</title>"
        '<link rel="stylesheet" href="/portal/static/portal.css"></head>\n'
        "<body>\n"
        f'<main class="{classes}">\n'
        f"<h1>{escape(title)}</h1>\n"
        f"{body}\n"
        "</main>\n"
        "</body>\n"
        "</html>\n"
    )
    return HTMLResponse(document, status_code=status, headers=HEADERS)


def _message(message: str | None) -> str:
    return (
        f'<p class="kg-alert kg-alert-error" role="alert">{escape(message)}</p>' if message else ""
    )


def enter_code(
    *, email: str, message: str | None = None, typed: str = "", status: int = 200
) -> HTMLResponse:
    """The form to type the code the terminal shows (it comes back here as a GET)."""
    body = (
        f"{_message(message)}"
        f"<p>Signed in as <strong>{escape(email)}</strong>.</p>"
        "<p>Enter the code that <code>kubegate login --sso</code> shows in your terminal.</p>"
        '<form method="get" action="/device">'
        '<label for="user_code">Code</label> '
        f'<input type="text" id="user_code" name="user_code" value="{escape(typed)}" '
        'autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="16" '
        'placeholder="XXXX-XXXX" required autofocus> '
        '<button type="submit">Continue</button></form>'
    )
    return _page("Log in the kubegate CLI", body, status)


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def confirm(
    *,
    email: str,
    org_name: str,
    user_code: str,
    client_description: str,
    created_at: dt.datetime,
    expires_at: dt.datetime,
    csrf_token: str,
) -> HTMLResponse:
    """The code's request, and the Approve and Deny buttons (one POST form, CSRF field)."""
    client = client_description or "a kubegate CLI (it did not say where it runs)"
    body = (
        f'<p class="kg-code">{escape(display_user_code(user_code))}</p>'
        '<dl class="kg-details">'
        f"<dt>Asked by</dt><dd>{escape(client)}</dd>"
        f"<dt>Asked at</dt><dd>{escape(_when(created_at))}</dd>"
        f"<dt>Code valid until</dt><dd>{escape(_when(expires_at))}</dd>"
        f"<dt>You would log it in as</dt><dd>{escape(email)} in {escape(org_name)}</dd>"
        "</dl>"
        '<p class="kg-alert kg-alert-warning">'
        "<strong>Only approve if you started this yourself</strong> and "
        "the code matches the one in your terminal. Whoever runs that command gets kubectl "
        "access as you. If someone sent you this link or code, deny it.</p>"
        '<form method="post" action="/device">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf_token)}">'
        f'<input type="hidden" name="user_code" value="{escape(user_code)}">'
        '<button type="submit" name="action" value="approve">Approve</button>'
        '<button type="submit" name="action" value="deny">Deny</button>'
        "</form>"
    )
    return _page("Approve this kubegate CLI login?", body)


def decided(*, approved: bool, client_description: str) -> HTMLResponse:
    """After Approve or Deny."""
    client = escape(client_description or "the kubegate CLI")
    if approved:
        body = (
            f"<p>You approved the login of {client}. Go back to your terminal: it finishes "
            "by itself within a few seconds. You can close this page.</p>"
        )
        return _page("CLI login approved", body)
    body = (
        f"<p>You denied the login of {client}; it gets no access. If you did not start it, "
        "tell your kubegate admin.</p>"
    )
    return _page("CLI login denied", body)


def sign_in_first(*, how: str, status: int = 401) -> HTMLResponse:
    """Shown to a browser without a session when there is no SSO sign-in to send it to."""
    body = f"<p>Sign in to kubegate first, then open this page again.</p><p>{escape(how)}</p>"
    return _page("Sign in to approve a CLI login", body, status)


def refused(message: str, *, status: int) -> HTMLResponse:
    """A request the page cannot serve (no CSRF token, too many wrong codes)."""
    return _page("Cannot continue", _message(message), status, "error")
