"""An attacker's toolkit for ID tokens: a test provider key, and tokens signed, forged or
unsigned with it, to inject the faults a real provider never produces."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

ISSUER = "https://idp.example.com"
CLIENT_ID = "kubegate"
NONCE = "n-0S6_WzA2Mj"
KID = "test-key-1"


def rsa_key(kid: str = KID) -> RSAKey:
    """A fresh 2048-bit RSA signing key named ``kid``."""
    return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})


def public_set(*keys: RSAKey | ECKey) -> KeySet:
    """The JWK set a provider would publish for ``keys`` (public halves only)."""
    return KeySet.import_key_set({"keys": [key.as_dict(private=False) for key in keys]})


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims for :data:`CLIENT_ID` from :data:`ISSUER`, issued now; ``None`` drops one."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "CiQ4ZjJlZmY",
        "aud": CLIENT_ID,
        "exp": now + 600,
        "iat": now,
        "nonce": NONCE,
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice",
        "groups": ["developers"],
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def signed(key: RSAKey | ECKey, body: dict[str, Any], *, alg: str = "RS256", **header: Any) -> str:
    """``body`` signed with ``key`` (``kid`` from the key unless ``header`` says otherwise)."""
    return jwt.encode({"alg": alg, "kid": key.kid, **header}, body, key, algorithms=[alg])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(header: dict[str, Any], body: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"


def unsigned(body: dict[str, Any], kid: str = KID) -> str:
    """An ``alg: none`` token: no signature at all."""
    return _segments({"alg": "none", "kid": kid, "typ": "JWT"}, body) + "."


def hmac_with_public_key(key: RSAKey, body: dict[str, Any]) -> str:
    """The key-confusion attack: HS256 keyed with the provider's *public* key (PEM), which a
    verifier that lets the token pick its algorithm would accept."""
    signing_input = _segments({"alg": "HS256", "kid": key.kid, "typ": "JWT"}, body)
    public_pem = key.as_pem(private=False)
    digest = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(digest)}"


def with_payload(token: str, body: dict[str, Any]) -> str:
    """``token`` with its payload swapped for ``body`` and the original signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{_b64(json.dumps(body).encode())}.{signature}"
