"""``kubegate login SERVER --sso``: a CLI login approved in a browser (RFC 8628).

The CLI needs no identity-provider configuration: it asks kubegate for a code
(``POST /api/v1/auth/device``), prints the code and the page to approve it at (and opens
that page when this machine has a browser to show it), then polls
``POST /api/v1/auth/device/token`` at the interval the server gives, slower when told to
``slow_down``, until the person signed in to kubegate in a browser (SSO) approved or denied,
or the code expired. Over SSH, or with ``--no-browser``, the page is opened on any other
device: the code is short enough to type.
"""

from __future__ import annotations

import getpass
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

from kubegate import __version__
from kubegate.cli import config_store
from kubegate.cli.api import ApiClient, ApiError
from kubegate.cli.application import Application
from kubegate.cli.config_store import Credential, Trust

GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN_STEP = 5  # seconds, RFC 8628 §3.5


def can_open_browser(environ: Mapping[str, str], platform: str = sys.platform) -> bool:
    """Whether a browser opened here would be seen by the person at the keyboard: not in an
    SSH session, and on Linux and the BSDs only with a graphical display."""
    if environ.get("SSH_CONNECTION") or environ.get("SSH_TTY") or environ.get("SSH_CLIENT"):
        return False
    if platform == "darwin" or platform.startswith("win"):
        return True
    return bool(environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"))


def client_description() -> str:
    """What the approval page shows as asking: this CLI, its user and host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    host = socket.gethostname() or "an unnamed host"
    return f"kubegate CLI {__version__} on {host}" + (f" (user {user})" if user else "")


def _open(url: str, app: Application) -> None:
    import webbrowser

    try:
        opened = webbrowser.open(url, new=2)
    except Exception:  # noqa: BLE001 - any browser launcher failure: the URL is printed anyway
        opened = False
    if not opened:
        app.output.note("(No browser could be opened here: open the link yourself.)")


def device_login(
    app: Application, server: str, trust: Trust, *, browser: bool
) -> tuple[Credential, int | None]:
    """Run the device flow against ``server``; the CLI login and its idle timeout (seconds).

    Ends the command (exit 1, what happened and what to do) when the login is denied, the
    code expires or the server refuses; Ctrl-C ends it with nothing saved (exit 130).
    """
    with ApiClient(server, trust) as api:
        status, started = api.oauth(
            "/api/v1/auth/device", {"client_description": client_description()}
        )
        if status != 200:
            app.output.fail(f"kubegate at {server} cannot start an SSO login: {_said(started)}")
        code, page = str(started["user_code"]), str(started["verification_uri"])
        complete = str(started.get("verification_uri_complete") or page)
        expires_in = int(started.get("expires_in") or 600)
        interval = max(1, int(started.get("interval") or 5))
        app.output.note(
            f"To log in, open this page in a browser and sign in:\n\n    {page}\n\n"
            f"and enter the code:\n\n    {code}\n\n"
            f"(or open {complete} , which has the code in it)\n"
            f"Only approve it there if the code matches. It is valid for "
            f"{_minutes(expires_in)}."
        )
        if browser and can_open_browser(app.environ):
            _open(complete, app)
        try:
            answer = _wait(app, api, str(started["device_code"]), interval, expires_in, server)
        except KeyboardInterrupt:
            app.output.fail("cancelled; not logged in", code=130)
    credential = Credential(
        kind="sso",
        token=str(answer["token"]),
        expires_at=config_store.parse_time(answer.get("expires_at")),
    )
    idle = answer.get("idle_timeout_seconds")
    return credential, int(idle) if idle else None


def _wait(
    app: Application, api: ApiClient, device_code: str, interval: int, expires_in: int, server: str
) -> dict[str, Any]:
    """Poll until the server hands out the login; end the command on any final answer."""
    deadline = time.monotonic() + expires_in + interval
    form = {"grant_type": GRANT, "device_code": device_code}
    with app.output.err.status("Waiting for the approval in the browser (Ctrl-C cancels)..."):
        while True:
            time.sleep(interval)  # RFC 8628 §3.5: the interval between polls, not a guess
            try:
                status, answer = api.oauth("/api/v1/auth/device/token", form)
            except ApiError as exc:
                if exc.status is not None or time.monotonic() > deadline:
                    raise
                app.output.note(f"warning: {exc}; trying again")
                continue
            if status == 200:
                return dict(answer)
            error = str(answer.get("error", ""))
            if error == "authorization_pending":
                continue
            if error == "slow_down":
                interval = max(int(answer.get("interval") or 0), interval + SLOW_DOWN_STEP)
                continue
            if error == "access_denied":
                app.output.fail("the login was denied in the browser; not logged in")
            if error == "expired_token":
                app.output.fail(
                    "the code expired before anyone approved it; not logged in. "
                    f"Run again: kubegate login {server} --sso"
                )
            app.output.fail(f"not logged in: {_said(answer)}")


def _said(answer: Any) -> str:
    if isinstance(answer, dict):
        return str(answer.get("error_description") or answer.get("error") or answer)
    return str(answer)


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} minutes" if seconds >= 120 else f"{seconds} seconds"
