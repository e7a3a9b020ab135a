"""The provider client: lazy discovery, the issuer check, key rotation and its rate limit.

The provider here is a tiny in-memory one (an httpx MockTransport serving a discovery document
and a JWK set of test keys): fault injection, for what a real Dex cannot be made to do on cue
(rotate keys, go down mid-way, name another issuer). The happy path against a real provider is
tests/e2e/test_oidc_browser.py with Dex.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from pydantic import SecretStr

from kubegate.auth.oidc_errors import (
    IdTokenRejected,
    ProviderMisconfigured,
    ProviderRefused,
    ProviderUnavailable,
    UnknownSigningKey,
)
from kubegate.auth.oidc_provider import KEY_REFETCH_INTERVAL, OidcProvider
from kubegate.settings import OidcSettings
from tests.unit.auth.oidc_forgery import CLIENT_ID, ISSUER, NONCE, claims, rsa_key, signed

pytestmark = pytest.mark.anyio


@dataclass
class FakeIdp:
    """Serves discovery and the JWKS of ``keys``; counts what was asked; can be 'down'."""

    keys: list[RSAKey]
    issuer: str = ISSUER
    down: bool = False
    requests: list[str] = field(default_factory=list)
    token_answer: tuple[int, dict[str, Any]] = (200, {})

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url.path)
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": self.issuer,
                    "authorization_endpoint": f"{ISSUER}/auth",
                    "token_endpoint": f"{ISSUER}/token",
                    "jwks_uri": f"{ISSUER}/keys",
                },
            )
        if request.url.path == "/keys":
            return httpx.Response(
                200, json={"keys": [key.as_dict(private=False) for key in self.keys]}
            )
        if request.url.path == "/token":
            status, body = self.token_answer
            return httpx.Response(status, json=body)
        return httpx.Response(404)

    def count(self, path: str) -> int:
        return self.requests.count(path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider_for(test: FakeIdp, clock: Clock | None = None) -> OidcProvider:
    settings = OidcSettings(issuer=ISSUER, client_id=CLIENT_ID, client_secret=SecretStr("s3cret"))
    return OidcProvider(
        settings, transport=httpx.MockTransport(test.handle), clock=clock or Clock()
    )


async def test_nothing_is_fetched_until_the_first_sign_in() -> None:
    test = FakeIdp([rsa_key()])
    provider = provider_for(test)

    assert test.requests == []
    url = await provider.authorization_url(
        redirect_uri="https://kg/cb", state="st", nonce=NONCE, code_verifier="v" * 64
    )
    assert url.startswith(f"{ISSUER}/auth?response_type=code&client_id=kubegate")
    assert "code_challenge_method=S256" in url and "nonce=" + NONCE in url
    assert test.requests == ["/.well-known/openid-configuration"]
    await provider.aclose()


async def test_provider_down_says_so_and_the_next_sign_in_retries() -> None:
    test = FakeIdp([rsa_key()], down=True)
    provider = provider_for(test)

    with pytest.raises(ProviderUnavailable, match=r"cannot reach SSO at https://idp"):
        await provider.metadata()
    test.down = False
    assert (await provider.metadata()).token_endpoint == f"{ISSUER}/token"
    assert test.count("/.well-known/openid-configuration") == 2
    await provider.aclose()


async def test_discovery_naming_another_issuer_is_refused() -> None:
    test = FakeIdp([rsa_key()], issuer="https://other.example.com")
    provider = provider_for(test)

    with pytest.raises(ProviderMisconfigured, match="names the issuer 'https://other"):
        await provider.metadata()
    await provider.aclose()


async def test_keys_are_fetched_once_and_reused() -> None:
    key = rsa_key()
    test = FakeIdp([key])
    provider = provider_for(test)

    for _ in range(3):
        await provider.verify(signed(key, claims()), nonce=NONCE)

    assert test.count("/keys") == 1
    await provider.aclose()


async def test_rotated_key_is_fetched_when_a_token_names_it() -> None:
    old, new = rsa_key("old"), rsa_key("new")
    test = FakeIdp([old])
    clock = Clock()
    provider = provider_for(test, clock)
    await provider.verify(signed(old, claims()), nonce=NONCE)

    test.keys = [new]  # the provider rotates
    clock.now += KEY_REFETCH_INTERVAL
    verified = await provider.verify(signed(new, claims()), nonce=NONCE)

    assert verified["sub"] == "CiQ4ZjJlZmY"
    assert test.count("/keys") == 2
    await provider.aclose()


async def test_unknown_kid_is_refused_after_one_fetch() -> None:
    key, stranger = rsa_key("known"), rsa_key("made-up")
    test = FakeIdp([key])
    provider = provider_for(test)

    with pytest.raises(UnknownSigningKey, match="'made-up'"):
        await provider.verify(signed(stranger, claims()), nonce=NONCE)

    assert test.count("/keys") == 1
    await provider.aclose()


async def test_unknown_kids_fetch_the_keys_at_most_once_per_interval() -> None:
    key = rsa_key("known")
    test = FakeIdp([key])
    clock = Clock()
    provider = provider_for(test, clock)
    await provider.verify(signed(key, claims()), nonce=NONCE)

    for n in range(5):
        clock.now += 1
        with pytest.raises(UnknownSigningKey):
            await provider.verify(signed(rsa_key(f"junk-{n}"), claims()), nonce=NONCE)
    assert test.count("/keys") == 1

    clock.now += KEY_REFETCH_INTERVAL
    with pytest.raises(UnknownSigningKey):
        await provider.verify(signed(rsa_key("junk-late"), claims()), nonce=NONCE)
    assert test.count("/keys") == 2
    await provider.aclose()


async def test_token_verified_against_the_settings_not_the_token() -> None:
    key = rsa_key()
    provider = provider_for(FakeIdp([key]))

    with pytest.raises(IdTokenRejected, match="aud"):
        await provider.verify(signed(key, claims(aud="someone-else")), nonce=NONCE)
    await provider.aclose()


async def test_code_exchange_refused_by_the_provider_says_start_again() -> None:
    test = FakeIdp([rsa_key()], token_answer=(400, {"error": "invalid_grant"}))
    provider = provider_for(test)

    with pytest.raises(ProviderRefused, match=r"refused to complete the sign-in \(invalid_grant\)"):
        await provider.exchange_code(code="c", redirect_uri="https://kg/cb", code_verifier="v")
    await provider.aclose()


async def test_code_exchange_answers_the_id_token() -> None:
    test = FakeIdp([rsa_key()], token_answer=(200, {"id_token": "a.b.c", "token_type": "x"}))
    provider = provider_for(test)

    assert await provider.exchange_code(code="c", redirect_uri="https://kg/cb", code_verifier="v")
    assert test.requests[-1] == "/token"
    await provider.aclose()
