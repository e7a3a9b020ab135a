"""The approval page of ``kubegate login --sso`` (``/device``): plain HTML, no script.

Every value is escaped (``html.escape``); the page carries no script at all, so its Content
Security Policy allows none, only its own stylesheet (by hash), forms posting back to this
origin, and no framing (an Approve button in someone else's frame is a clickjacking target).
Responses are never cached.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from html import escape

from fastapi.responses import HTMLResponse

from kubegate.auth.device_codes import display_user_code

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;"
    "color:#1b1f24;line-height:1.5}"
    "h1{font-size:1.4rem}"
    ".code{font-family:ui-monospace,monospace;font-size:1.6rem;letter-spacing:.15em}"
    ".box{border:1px solid #d0d7de;border-radius:6px;padding:1rem;margin:1rem 0}"
    ".warn{background:#fff8c5;border-color:#d4a72c}"
    ".error{background:#ffebe9;border-color:#ff8182}"
    "input[type=text]{font-family:ui-monospace,monospace;font-size:1.3rem;width:12rem;"
    "text-transform:uppercase;letter-spacing:.1em}"
    "button{font-size:1rem;padding:.4rem 1.2rem;margin-right:.6rem}"
    "dt{font-weight:600}dd{margin:0 0 .5rem 0}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} · kubegate</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )
    return HTMLResponse(document, status_code=status, headers=HEADERS)


def _message(message: str | None) -> str:
    return f'<p class="box error" role="alert">{escape(message)}</p>' if message else ""


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
        f'<p class="code">{escape(display_user_code(user_code))}</p>'
        '<dl class="box">'
        f"<dt>Asked by</dt><dd>{escape(client)}</dd>"
        f"<dt>Asked at</dt><dd>{escape(_when(created_at))}</dd>"
        f"<dt>Code valid until</dt><dd>{escape(_when(expires_at))}</dd>"
        f"<dt>You would log it in as</dt><dd>{escape(email)} in {escape(org_name)}</dd>"
        "</dl>"
        '<p class="box warn"><strong>Only approve if you started this yourself</strong> and '
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
    return _page("Cannot continue", _message(message), status)
