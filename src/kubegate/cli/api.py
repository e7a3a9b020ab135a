"""The CLI's client for kubegate's REST API: httpx, the login's TLS trust, one error type.

Every command talks to the server through :class:`ApiClient`; what can go wrong on the way
(the server unreachable, its certificate not the pinned one, an error answer) becomes an
:class:`ApiError` whose message a person can act on, with the HTTP status when there was
one. Answers are plain JSON values: the CLI reads a few fields and prints them. httpx (and
with it ``ssl``) is imported when the first client is made, not when the CLI starts: every
command module imports this one, and ``kubegate --help`` should not wait for httpx.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from kubegate import __version__
from kubegate.cli import config_store
from kubegate.cli.config_store import Login, Trust

if TYPE_CHECKING:
    import ssl

    import httpx

TIMEOUT = 30.0
USER_AGENT = f"kubegate-cli/{__version__}"


class ApiError(Exception):
    """A request that did not succeed. ``status`` is None when no answer came back."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.details: Mapping[str, Any] = details or {}


def ssl_context(trust: Trust) -> ssl.SSLContext:
    """Verification as the login pinned it: its CA only, the system's roots, or none."""
    import ssl

    if trust.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if trust.ca_pem is not None:
        return ssl.create_default_context(cadata=trust.ca_pem)
    return ssl.create_default_context()


class ApiClient:
    """Requests to one kubegate server, as one login (or anonymously: ``token=None``)."""

    def __init__(
        self, server: str, trust: Trust, token: str | None = None, *, relogin: str | None = None
    ) -> None:
        self.server = server
        # What a 401 tells the user to run (``--sso`` for an SSO login).
        self.relogin = relogin or f"kubegate login {server}"
        import httpx

        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            base_url=server, headers=headers, timeout=TIMEOUT, verify=ssl_context(trust)
        )

    @classmethod
    def of(cls, login: Login) -> ApiClient:
        return cls(
            login.server,
            login.trust,
            login.credential.token,
            relogin=config_store.login_command(login),
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        return self.request("GET", path, params=params)

    def pages(self, path: str) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing, following ``next_cursor``."""
        cursor: str | None = None
        while True:
            page = self.get(path, params={"cursor": cursor} if cursor else None)
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def post(self, path: str, body: object = None) -> Any:
        return self.request("POST", path, body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """The decoded JSON answer (None for an empty one), or :class:`ApiError`."""
        return self.send(method, path, body=body, params=params)[1]

    def send(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """The status and the decoded JSON answer of a successful request (2xx)."""
        response = self._success(method, path, body=body, params=params)
        return response.status_code, response.json() if response.content else None

    def text(self, method: str, path: str, *, body: object = None) -> tuple[str, dict[str, str]]:
        """The text and headers of a successful request's answer (a YAML kubeconfig)."""
        response = self._success(method, path, body=body)
        return response.text, dict(response.headers)

    def _success(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        import httpx

        try:
            response = self._client.request(
                method, path, json=body, params=dict(params) if params else None
            )
        except httpx.ConnectError as exc:
            raise ApiError(self._unreachable(exc)) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(f"kubegate at {self.server} did not answer in {TIMEOUT:.0f} s") from exc
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot talk to kubegate at {self.server}: {exc}") from exc
        if response.is_success:
            return response
        raise self._error(response)

    def oauth(self, path: str, form: Mapping[str, str]) -> tuple[int, Any]:
        """POST an OAuth form (RFC 8628's endpoints); the status and JSON answer of a
        success or of an OAuth error (400, ``{"error": ...}``); other failures raise."""
        import httpx

        try:
            response = self._client.post(path, data=dict(form))
        except httpx.ConnectError as exc:
            raise ApiError(self._unreachable(exc)) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(f"kubegate at {self.server} did not answer in {TIMEOUT:.0f} s") from exc
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot talk to kubegate at {self.server}: {exc}") from exc
        if response.status_code in (200, 400):
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if isinstance(answer, dict) and (response.is_success or "error" in answer):
                return response.status_code, answer
        raise self._error(response)

    def _unreachable(self, exc: httpx.ConnectError) -> str:
        import ssl

        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(exc):
            return (
                f"the TLS certificate of {self.server} is not trusted ({_verify_reason(exc)}): "
                "it does not chain to the CA pinned at login. If the server's CA really "
                f"changed, log in again: kubegate login {self.server}"
            )
        return f"cannot reach kubegate at {self.server}: {_connect_reason(exc)}"

    def _error(self, response: httpx.Response) -> ApiError:
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict):  # an OAuth error: {"error": "...", ...}
            error = {"code": error, "message": response.json().get("error_description")}
        message = error.get("message") or f"{response.status_code} {response.reason_phrase}"
        if response.status_code == 401:
            message = f"{message}; run: {self.relogin}"
        return ApiError(
            str(message),
            status=response.status_code,
            code=str(error.get("code") or ""),
            details=error.get("details") or {},
        )


def _verify_reason(exc: Exception) -> str:
    text = str(exc)
    return text.split("certificate verify failed:", 1)[-1].strip(" )]") or text


def _connect_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("[Errno 111] ", "").replace("[Errno -2] ", "")
