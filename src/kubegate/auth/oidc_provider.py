"""The organisation's OpenID Connect provider as kubegate's server, the relying party, meets it.

Everything here that touches the network: the discovery document, the JWK set, the code
exchange. The decisions stay in pure modules (:mod:`kubegate.auth.id_tokens`,
:mod:`kubegate.auth.oidc_identity`); the OAuth 2 protocol pieces (the authorization request,
PKCE's S256 challenge, the token request and client authentication) are authlib's.

- Discovery is read on first use, not at start, so the server starts while the provider is
  down; a failed read is retried by the next sign-in. A good document is kept for
  :data:`METADATA_TTL` seconds (and kept longer while a re-read fails). Its ``issuer`` must be
  the configured one (OIDC Discovery §4.3).
- The JWK set is cached. A token naming a ``kid`` the set lacks (the provider rotated its
  keys) makes one fetch of the set, at most every :data:`KEY_REFETCH_INTERVAL` seconds, so
  tokens with made-up ``kid`` values cannot make kubegate hammer the provider.
- TLS trusts ``oidc.ca_file`` when set, else the system's CA store.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from kubegate.auth.id_tokens import (
    IdTokenExpectations,
    has_key,
    signing_key_id,
    verify_id_token,
)
from kubegate.auth.oidc_errors import (
    ProviderMisconfigured,
    ProviderRefused,
    ProviderUnavailable,
)
from kubegate.settings import OidcSettings

log = logging.getLogger("kubegate.oidc")
_OAUTH_ERROR = re.compile(r"[a-z_]{1,64}")

#: Seconds a discovery document is used before it is read again.
METADATA_TTL: Final = 3600.0
#: Fewest seconds between two fetches of the JWK set caused by an unknown ``kid``.
KEY_REFETCH_INTERVAL: Final = 30.0
_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_MAX_DOCUMENT = 1 << 20


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of the discovery document kubegate uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


def provider_tls(settings: OidcSettings) -> ssl.SSLContext:
    """The TLS context for the provider: ``ca_file`` when set, else the system's trust store."""
    if settings.ca_file is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(settings.ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"oidc.ca_file {settings.ca_file} cannot be read as a PEM CA bundle: {exc}"
        ) from exc


class OidcProvider:
    """One provider (``[oidc]``): built in the app's lifespan, closed with it."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._http = httpx.AsyncClient(
            verify=provider_tls(settings) if transport is None else True,
            transport=transport,
            timeout=_TIMEOUT,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )
        self._lock = asyncio.Lock()
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    async def aclose(self) -> None:
        await self._http.aclose()

    async def metadata(self) -> ProviderMetadata:
        """The discovery document; :class:`ProviderUnavailable` when it cannot be read and
        none was read before, :class:`ProviderMisconfigured` when it names another issuer."""
        current = self._metadata
        if current is not None and self._clock() - self._metadata_at < METADATA_TTL:
            return current
        async with self._lock:
            if self._metadata is not current:
                assert self._metadata is not None
                return self._metadata  # another sign-in read it meanwhile
            try:
                fresh = await self._discover()
            except ProviderUnavailable:
                if current is None:
                    raise
                log.warning("re-reading the OIDC discovery document failed; using the last one")
                self._metadata_at = self._clock()
                return current
            self._metadata, self._metadata_at = fresh, self._clock()
            return fresh

    async def _discover(self) -> ProviderMetadata:
        url = f"{self.issuer}/.well-known/openid-configuration"
        document = await self._get_json(url, "discovery document")
        issuer = document.get("issuer")
        if issuer != self.issuer:
            raise ProviderMisconfigured(
                f"The provider's discovery document at {url} names the issuer {issuer!r}, "
                f"not {self.issuer!r} as oidc.issuer says. An administrator must set "
                "oidc.issuer to exactly the provider's issuer."
            )
        endpoints = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or not value.startswith("https://"):
                raise ProviderMisconfigured(
                    f"The provider's discovery document at {url} has no https {name}."
                )
            endpoints[name] = value
        return ProviderMetadata(issuer=issuer, **endpoints)

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                f"kubegate cannot reach {self.settings.display_name} at {self.issuer} "
                f"({type(exc).__name__} reading its {what}). Try again in a minute; if it "
                "goes on, tell your kubegate administrator."
            ) from exc
        if response.status_code != 200 or len(response.content) > _MAX_DOCUMENT:
            raise ProviderUnavailable(
                f"{self.settings.display_name} answered HTTP {response.status_code} for its "
                f"{what} ({url}). Try again in a minute; if it goes on, tell your kubegate "
                "administrator."
            )
        try:
            document = response.json()
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise ProviderMisconfigured(f"The provider's {what} at {url} is not a JSON object.")
        return document

    async def signing_keys(self, kid: str | None) -> KeySet:
        """The provider's JWK set, fetched again when it lacks ``kid`` and the last fetch is
        older than :data:`KEY_REFETCH_INTERVAL`."""
        keys = self._keys
        if keys is not None and (has_key(keys, kid) or not self._may_refetch()):
            return keys
        async with self._lock:
            if self._keys is not keys:
                assert self._keys is not None
                return self._keys  # fetched by another sign-in meanwhile
            if keys is not None and not self._may_refetch():
                return keys
            metadata = await self._metadata_unlocked()
            document = await self._get_json(metadata.jwks_uri, "signing keys (JWKS)")
            try:
                fresh = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (JoseError, ValueError, KeyError, TypeError) as exc:
                raise ProviderMisconfigured(
                    f"The provider's JWKS at {metadata.jwks_uri} is not a valid JWK set."
                ) from exc
            self._keys, self._keys_at = fresh, self._clock()
            log.info("fetched the OIDC provider's signing keys", extra={"keys": len(fresh.keys)})
            return fresh

    def _may_refetch(self) -> bool:
        return self._clock() - self._keys_at >= KEY_REFETCH_INTERVAL

    async def _metadata_unlocked(self) -> ProviderMetadata:
        # Called under the lock: metadata() would wait for it; read what is there or discover.
        if self._metadata is None:
            self._metadata, self._metadata_at = await self._discover(), self._clock()
        return self._metadata

    async def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_verifier: str
    ) -> str:
        """Where to send the browser: the authorization request with PKCE (S256)."""
        metadata = await self.metadata()
        url: str = prepare_grant_uri(
            metadata.authorization_endpoint,
            self.settings.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=" ".join(self.settings.scopes),
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(code_verifier),
            code_challenge_method="S256",
        )
        return url

    async def exchange_code(self, *, code: str, redirect_uri: str, code_verifier: str) -> str:
        """The ID token the token endpoint gives for ``code`` (client_secret_basic, PKCE).

        :class:`ProviderRefused` when the provider answers with an OAuth error (a used or
        expired code, a wrong verifier), :class:`ProviderUnavailable` when it cannot be
        reached.
        """
        metadata = await self.metadata()
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=code_verifier
        )
        auth = ClientAuth(
            self.settings.client_id,
            self.settings.client_secret.get_secret_value(),
            "client_secret_basic",
        )
        url, headers, body = auth.prepare(
            "POST",
            metadata.token_endpoint,
            {"Content-Type": "application/x-www-form-urlencoded"},
            body,
        )
        try:
            response = await self._http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(
                f"kubegate cannot reach {self.settings.display_name}'s token endpoint "
                f"({type(exc).__name__}). Try again in a minute; if it goes on, tell your "
                "kubegate administrator."
            ) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ProviderUnavailable(
                f"{self.settings.display_name}'s token endpoint answered HTTP "
                f"{response.status_code} without a JSON body. Try again in a minute."
            )
        if "error" in answer or response.status_code != 200:
            raw = str(answer.get("error", ""))
            # Only an OAuth error code reaches the page; anything else the provider wrote
            # stays out of it (and out of the log beyond its status).
            error = raw if _OAUTH_ERROR.fullmatch(raw) else f"HTTP {response.status_code}"
            log.warning(
                "the OIDC provider refused the code exchange",
                extra={"oauth_error": error, "status": response.status_code},
            )
            raise ProviderRefused(
                f"{self.settings.display_name} refused to complete the sign-in ({error}): the "
                "sign-in code was already used, has expired, or does not match this sign-in. "
                "Start again."
            )
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise ProviderMisconfigured(
                f"{self.settings.display_name}'s token endpoint answered without an ID token; "
                "is 'openid' in oidc.scopes?"
            )
        return id_token

    async def verify(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The ID token's claims, verified (:func:`verify_id_token`) against the provider's
        keys, fetched again once when the token names a key they lack."""
        expected = IdTokenExpectations(
            issuer=self.issuer, client_id=self.settings.client_id, nonce=nonce
        )
        kid = signing_key_id(id_token)
        keys = await self.signing_keys(kid)  # fetched again here when it lacks kid
        return verify_id_token(id_token, keys, expected, now=int(time.time()))
