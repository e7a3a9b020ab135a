"""A real Dex OIDC provider on loopback, for tests that need genuine ID tokens.

Dex serves HTTPS with a certificate from a throwaway test CA, keeps its state in memory (the
cached binary is built without CGO, so no SQLite), and knows its local users (by default one,
alice@example.com) and one confidential client, all with random secrets. The password grant
goes through the local password database, so a test can get tokens without driving a browser;
the client also has the issuer's ``/device/callback`` registered, so the device flow works too.

A test of a relying party (kubegate's own browser sign-in) passes its callback URL as one of
``redirect_uris`` (Dex matches them exactly, so the port must be known before Dex starts) and
the users it needs: a static user can carry groups (in the ``groups`` claim when the
``groups`` scope is asked for) and an unverified email (``email_verified: false``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import ssl
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import NotRequired, TypedDict, cast

import bcrypt
import httpx
import yaml

from kubegate.errors import KubegateError
from kubegate.pki import CertificateAuthority
from testenv import components as c
from testenv.controlplane import installed_binary
from testenv.processes import ManagedProcess, free_port

CLIENT_ID = "kubegate"
LOOPBACK_REDIRECT_URI = "http://127.0.0.1/callback"
USER_EMAIL = "alice@example.com"
USERNAME = "alice"
_HOSTS = ("127.0.0.1", "localhost")
# Dex refuses static password hashes cheaper than Go's bcrypt.DefaultCost (10); the minimum
# keeps each login fast.
_BCRYPT_ROUNDS = 10
# Dex ignores unknown config keys unless this feature flag is on; a misspelt key should fail
# the start, not silently change behaviour.
_DEX_ENV = {"DEX_CONFIG_DISALLOW_UNKNOWN_FIELDS": "true"}
_START_TIMEOUT = 30.0
_REQUEST_TIMEOUT = 10.0


def _password() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class DexUser:
    """One of Dex's static (local) users: logs in with ``email`` and ``password``."""

    email: str
    username: str
    password: str = field(default_factory=_password)
    groups: tuple[str, ...] = ()
    email_verified: bool = True


@dataclass(frozen=True, slots=True)
class DexCredentials:
    """Everything a test needs to talk to the running Dex: where it is, whom to trust, who logs in.

    ``ca_pem``/``ca_file`` are the test CA that signed Dex's serving certificate; kubegate and
    kube-apiserver must trust it to fetch the issuer's discovery document and keys.
    ``email``/``username``/``password`` are those of the first of ``users``.
    """

    issuer: str
    ca_pem: bytes
    ca_file: Path
    client_id: str
    client_secret: str
    email: str
    username: str
    password: str
    users: tuple[DexUser, ...] = ()
    redirect_uris: tuple[str, ...] = ()

    def user(self, email: str) -> DexUser:
        """The static user with ``email``; KeyError when Dex has none."""
        for user in self.users:
            if user.email == email:
                return user
        raise KeyError(f"Dex has no user {email}")

    @property
    def discovery_url(self) -> str:
        """The issuer's OpenID Connect discovery document."""
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def token_url(self) -> str:
        """Dex's OAuth 2 token endpoint."""
        return f"{self.issuer}/token"

    @property
    def device_callback_uri(self) -> str:
        """The redirect URI Dex uses for the device flow; registered for the client."""
        return f"{self.issuer}/device/callback"

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS context that trusts only the test CA, for clients of Dex."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())


class TokenResponse(TypedDict):
    """Dex's successful answer to a token request (RFC 6749 section 5.1 plus ``id_token``)."""

    access_token: str
    token_type: str
    expires_in: int
    id_token: str
    refresh_token: NotRequired[str]


class TokenRequestRefused(KubegateError):
    """Dex answered a token request with an OAuth 2 error (e.g. a wrong password).

    ``body`` is the parsed JSON answer (empty when it was not a JSON object), so tests can check
    what Dex did and did not send back.
    """

    def __init__(self, status_code: int, body: Mapping[str, object]) -> None:
        self.status_code = status_code
        self.body = dict(body)
        self.error = str(body.get("error", "unknown_error"))
        self.description = str(body.get("error_description", ""))
        super().__init__(
            f"Dex refused the token request: HTTP {status_code} {self.error}: {self.description}"
        )


def dex_config(creds: DexCredentials, *, listen: str, cert: Path, key: Path) -> dict[str, object]:
    """The Dex configuration for ``creds``: HTTPS only, memory storage, its users, one client."""
    return {
        "issuer": creds.issuer,
        "storage": {"type": "memory"},
        "web": {"https": listen, "tlsCert": str(cert), "tlsKey": str(key)},
        "logger": {"level": "info", "format": "text"},
        "oauth2": {"passwordConnector": "local", "skipApprovalScreen": True},
        "enablePasswordDB": True,
        "staticPasswords": [_static_password(user) for user in creds.users],
        "staticClients": [
            {
                "id": creds.client_id,
                "secret": creds.client_secret,
                "name": "kubegate",
                "redirectURIs": [
                    LOOPBACK_REDIRECT_URI,
                    creds.device_callback_uri,
                    *creds.redirect_uris,
                ],
            }
        ],
    }


def _static_password(user: DexUser) -> dict[str, object]:
    """A ``staticPasswords`` entry (Dex's ``storage.Password``)."""
    password_hash = bcrypt.hashpw(user.password.encode(), bcrypt.gensalt(rounds=_BCRYPT_ROUNDS))
    entry: dict[str, object] = {
        "email": user.email,
        "hash": password_hash.decode(),
        "username": user.username,
        "userID": str(uuid.uuid4()),
        "emailVerified": user.email_verified,
    }
    if user.groups:
        entry["groups"] = list(user.groups)
    return entry


class Dex:
    """Starts and stops one Dex in a temporary work dir that it removes on stop.

    Use as a context manager, or call :meth:`start` and, always, :meth:`stop`. ``users``
    defaults to alice@example.com alone; ``redirect_uris`` are registered for the client
    beside the loopback and device-flow ones.
    """

    def __init__(
        self,
        cache: Path | None = None,
        *,
        redirect_uris: Sequence[str] = (),
        users: Sequence[DexUser] | None = None,
    ) -> None:
        self.cache = cache or c.default_cache_dir()
        self.redirect_uris = tuple(redirect_uris)
        self.users = tuple(users) if users else (DexUser(USER_EMAIL, USERNAME),)
        self.workdir: Path | None = None
        self._process: ManagedProcess | None = None
        self._credentials: DexCredentials | None = None
        self.startup_seconds = 0.0

    @property
    def credentials(self) -> DexCredentials:
        """How to reach the running Dex; RuntimeError before :meth:`start`."""
        if self._credentials is None:
            raise RuntimeError("Dex is not started")
        return self._credentials

    def start(self) -> DexCredentials:
        """Write the config, start ``dex serve`` and wait until discovery answers over TLS."""
        if self._process is not None:
            raise RuntimeError("Dex is already started")
        binary = installed_binary(self.cache, c.DEX)
        started = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="kubegate-dex-"))
        try:
            self._credentials = self._launch(binary, self.workdir)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self._credentials

    def _launch(self, binary: Path, workdir: Path) -> DexCredentials:
        ca = CertificateAuthority.create("kubegate-dex-test-ca")
        ca_file = workdir / "ca.crt"
        ca_file.write_bytes(ca.cert_pem)
        cert, key = workdir / "dex.crt", workdir / "dex.key"
        ca.issue("dex", hosts=_HOSTS, server=True).write(cert, key)
        port = free_port()
        first = self.users[0]
        creds = DexCredentials(
            issuer=f"https://127.0.0.1:{port}/dex",
            ca_pem=ca.cert_pem,
            ca_file=ca_file,
            client_id=CLIENT_ID,
            client_secret=secrets.token_urlsafe(32),
            email=first.email,
            username=first.username,
            password=first.password,
            users=self.users,
            redirect_uris=self.redirect_uris,
        )
        config_file = workdir / "config.yaml"
        config_file.touch(mode=0o600)
        config = dex_config(creds, listen=f"127.0.0.1:{port}", cert=cert, key=key)
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self._process = ManagedProcess(
            "dex",
            [str(binary), "serve", str(config_file)],
            workdir / "dex.log",
            env={**os.environ, **_DEX_ENV},
        )
        ctx = creds.ssl_context()

        def discovery_answers() -> bool:
            try:
                response = httpx.get(creds.discovery_url, verify=ctx, timeout=2)
            except httpx.TransportError:
                return False
            return response.status_code == 200

        self._process.wait_until(
            discovery_answers, timeout=_START_TIMEOUT, what="serving its discovery document"
        )
        return creds

    def password_grant(
        self,
        scope: str = "openid email profile",
        *,
        username: str | None = None,
        password: str | None = None,
    ) -> TokenResponse:
        """Tokens for the test user via the resource-owner password grant.

        ``username``/``password`` default to the configured user (Dex logs in by email);
        raises :class:`TokenRequestRefused` when Dex answers with an error.
        """
        creds = self.credentials
        with httpx.Client(verify=creds.ssl_context(), timeout=_REQUEST_TIMEOUT) as client:
            response = client.post(
                creds.token_url,
                data={
                    "grant_type": "password",
                    "scope": scope,
                    "username": creds.email if username is None else username,
                    "password": creds.password if password is None else password,
                },
                # token_urlsafe secrets need no form-encoding inside Basic auth (RFC 6749 2.3.1).
                auth=(creds.client_id, creds.client_secret),
            )
        if response.status_code != 200:
            raise _refusal(response)
        return cast(TokenResponse, response.json())

    def stop(self) -> None:
        """Stop Dex and remove the work dir; idempotent."""
        try:
            if self._process is not None:
                self._process.stop()
        finally:
            self._process = None
            self._credentials = None
            if self.workdir is not None:
                shutil.rmtree(self.workdir, ignore_errors=True)
                self.workdir = None

    def __enter__(self) -> Dex:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _refusal(response: httpx.Response) -> TokenRequestRefused:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    return TokenRequestRefused(response.status_code, body)
