"""Who the agent is to its kube-apiserver and how it trusts it, from its kubeconfig context.

:class:`ApiServer` is where the apiserver is (the ``server`` URL), :func:`tls_context` how to
trust it and which client certificate to present, :func:`credential_for` the
``Authorization`` the agent sends (a token, re-read from its file as kubelet rotates it, or
basic auth). What the agent cannot use (exec plugins, auth providers, unreadable
certificates) is a clear :class:`~kubegate.errors.KubegateError` at start. Nothing here logs
or echoes a token.
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from lightkube.config.kubeconfig import SingleConfig
from lightkube.config.models import User

from kubegate.errors import KubegateError

log = logging.getLogger(__name__)

# kubelet rotates a projected service account token well before it expires (after 80 % of its
# life, an hour at the least); re-reading the file this often always sees the fresh one.
TOKEN_REREAD_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class ApiServer:
    """Where the apiserver is, from the kubeconfig's ``server`` URL."""

    scheme: str
    host: str  # for connecting and TLS: no brackets around an IPv6 address
    port: int
    base_path: str  # "" or a prefix without the trailing "/" (an apiserver behind a path)
    host_header: str

    @classmethod
    def from_url(cls, url: str) -> ApiServer:
        """Parse ``https://host[:port][/prefix]`` (``http://`` is accepted, for completeness)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise KubegateError(f"the kubeconfig's server URL is invalid: {exc}") from exc
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise KubegateError(
                f"the kubeconfig's server must be an https:// URL, not {url[:80]!r}"
            )
        netloc = parts.netloc.rpartition("@")[2]
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=port or (443 if parts.scheme == "https" else 80),
            base_path=parts.path.rstrip("/"),
            host_header=netloc,
        )

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class TokenFile:
    """A bearer token read from a file (the in-cluster service account token, which kubelet
    rotates): re-read at most every :data:`TOKEN_REREAD_SECONDS`, the last good one kept."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = TOKEN_REREAD_SECONDS,
    ) -> None:
        self.path = path
        self._clock = clock
        self._interval = interval
        self._bearer = self._read()
        self._read_at = clock()

    def _read(self) -> str:
        try:
            token = self.path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KubegateError(f"cannot read the token file {self.path}: {exc}") from exc
        if not token:
            raise KubegateError(f"the token file {self.path} is empty")
        return f"Bearer {token}"

    def authorization(self) -> str:
        now = self._clock()
        if now - self._read_at >= self._interval:
            self._read_at = now
            try:
                self._bearer = self._read()
            except KubegateError as exc:
                log.warning("keeping the previous service account token", extra={"error": str(exc)})
        return self._bearer


class StaticAuthorization:
    """An ``Authorization`` value that never changes (a token, basic auth, or none)."""

    def __init__(self, value: str | None) -> None:
        self._value = value

    def authorization(self) -> str | None:
        return self._value


def credential_for(
    user: User | None,
    abs_file: Callable[[str], object],
    *,
    clock: Callable[[], float] = time.monotonic,
) -> TokenFile | StaticAuthorization:
    """The ``Authorization`` source of a kubeconfig user; exec plugins are refused."""
    if user is None:
        return StaticAuthorization(None)
    if user.exec is not None:
        raise KubegateError(
            "the agent's kubeconfig user runs an exec credential plugin "
            f"({user.exec.command!r}), which the agent does not support: give it a "
            "ServiceAccount token (token or tokenFile) or a client certificate"
        )
    if user.auth_provider:
        raise KubegateError(
            "the agent's kubeconfig user uses an auth-provider, which the agent does not "
            "support: give it a ServiceAccount token or a client certificate"
        )
    if user.token_file is not None:
        return TokenFile(Path(str(abs_file(user.token_file))), clock=clock)
    if user.token is not None:
        return StaticAuthorization(f"Bearer {user.token.strip()}")
    if user.username and user.password:
        basic = base64.b64encode(f"{user.username}:{user.password}".encode()).decode()
        return StaticAuthorization(f"Basic {basic}")
    return StaticAuthorization(None)  # a client certificate, or anonymous


def _b64(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise KubegateError(f"the kubeconfig's {what} is not valid base64") from exc


def tls_context(config: SingleConfig, alpn: Sequence[str] = ("http/1.1",)) -> ssl.SSLContext | None:
    """Trust the cluster CA (or nothing, with ``insecure-skip-tls-verify``), present the
    client certificate when there is one, offer ``alpn`` (``http/1.1`` only by default).
    ``None`` for http."""
    cluster, user = config.cluster, config.user
    if ApiServer.from_url(cluster.server).scheme != "https":
        return None
    try:
        if cluster.certificate_auth:
            ctx = ssl.create_default_context(cafile=str(config.abs_file(cluster.certificate_auth)))
        elif cluster.certificate_auth_data:
            ca = _b64(cluster.certificate_auth_data, "certificate-authority-data")
            ctx = ssl.create_default_context(cadata=ca.decode("ascii", "strict"))
        else:
            ctx = ssl.create_default_context()
        if cluster.insecure and not (cluster.certificate_auth or cluster.certificate_auth_data):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if user is not None:
            _load_client_certificate(ctx, config, user)
        ctx.set_alpn_protocols(list(alpn))
    except (ssl.SSLError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise KubegateError(
            f"cannot set up TLS to the Kubernetes API server from the kubeconfig: {exc}"
        ) from exc
    return ctx


def _load_client_certificate(ctx: ssl.SSLContext, config: SingleConfig, user: User) -> None:
    if not (user.client_cert or user.client_cert_data):
        return
    if not (user.client_key or user.client_key_data):
        raise KubegateError("the kubeconfig user has a client certificate but no client key")
    # ssl loads certificates from files only: embedded data goes through a private temp dir.
    with tempfile.TemporaryDirectory(prefix="kubegate-agent-") as tmp:
        if user.client_cert_data:
            cert = Path(tmp, "client.crt")
            cert.write_bytes(_b64(user.client_cert_data, "client-certificate-data"))
        else:
            cert = Path(str(config.abs_file(str(user.client_cert))))
        if user.client_key_data:
            key = Path(tmp, "client.key")
            key.touch(mode=0o600)
            key.write_bytes(_b64(user.client_key_data, "client-key-data"))
        else:
            key = Path(str(config.abs_file(str(user.client_key))))
        ctx.load_cert_chain(cert, key)
