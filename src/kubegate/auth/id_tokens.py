"""Verifying an OpenID Connect ID token (OIDC Core 1.0 §3.1.3.7) with joserfc: pure, no I/O.

The caller hands in the provider's keys (``auth/oidc_provider.py`` fetches and caches them)
and what the token must say; joserfc checks the signature and the registered claims, this
module decides which algorithms, claims and leeway count. What is refused:

- any algorithm but the asymmetric ones in :data:`ALLOWED_ALGORITHMS`, before a key is
  looked at: ``none`` never, and no ``HS*`` (an HMAC "signed" with the provider's *public*
  key would otherwise verify, since that key is public);
- a signature that does not verify against the key the token's ``kid`` names;
- ``iss`` other than the configured issuer; ``aud`` without our client id; several
  audiences without ``azp``, or an ``azp`` other than our client id;
- ``exp`` passed, ``iat`` or ``nbf`` in the future (each with :data:`DEFAULT_LEEWAY`);
- ``nonce`` other than the one this sign-in stored; a missing ``sub``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Final

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidKeyIdError,
    JoseError,
)
from joserfc.jwk import KeySet

from kubegate.auth.oidc_errors import IdTokenRejected, UnknownSigningKey

#: Signature algorithms an ID token may use: asymmetric only (RFC 8725 §3.1-3.2).
ALLOWED_ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
#: Clock skew tolerated between kubegate and the provider, in seconds.
DEFAULT_LEEWAY: Final = 60


@dataclass(frozen=True, slots=True)
class IdTokenExpectations:
    """What a valid ID token for this sign-in says: who issued it, for whom, which nonce."""

    issuer: str
    client_id: str
    nonce: str


def signing_key_id(token: str) -> str | None:
    """The ``kid`` the token's (unverified) header names, after checking its ``alg``.

    The caller looks the key up with this (and fetches the provider's keys again when it
    is unknown); nothing else of an unverified header is trusted.
    """
    header = _header(token)
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise IdTokenRejected("the ID token's kid header is not a string")
    return kid


def has_key(keys: KeySet, kid: str | None) -> bool:
    """Whether ``keys`` can verify a token naming ``kid`` (no kid: only a one-key set can)."""
    if kid is None:
        return len(keys.keys) == 1
    return any(key.kid == kid for key in keys.keys)


def verify_id_token(
    token: str,
    keys: KeySet,
    expected: IdTokenExpectations,
    *,
    now: int,
    leeway: int = DEFAULT_LEEWAY,
) -> dict[str, Any]:
    """The token's claims once every check of this module's docstring has passed.

    Raises :class:`UnknownSigningKey` when ``keys`` lacks the token's key (the caller may
    fetch the keys again, once) and :class:`IdTokenRejected`, saying which check failed, for
    everything else. ``now`` is the Unix time to judge ``exp``/``iat``/``nbf`` against.
    """
    kid = signing_key_id(token)
    if not has_key(keys, kid):
        raise UnknownSigningKey(kid)
    try:
        decoded = jwt.decode(token, keys, algorithms=ALLOWED_ALGORITHMS)
    except BadSignatureError as exc:
        raise IdTokenRejected("the ID token's signature does not verify") from exc
    except InvalidKeyIdError as exc:
        # The kid exists but not for this algorithm (an RSA key named by an ES256 token).
        raise IdTokenRejected(f"no key {kid!r} for the token's algorithm") from exc
    except (JoseError, ValueError) as exc:
        raise IdTokenRejected(f"the ID token is malformed ({type(exc).__name__})") from exc
    claims = decoded.claims
    registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=leeway,
        iss={"essential": True, "value": expected.issuer},
        aud={"essential": True, "value": expected.client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    try:
        registry.validate(claims)
    except ExpiredTokenError as exc:
        raise IdTokenRejected("the ID token has expired (exp)") from exc
    except ClaimError as exc:
        raise IdTokenRejected(f"the ID token's claims are not valid: {exc}") from exc
    _check_authorized_party(claims, expected.client_id)
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not hmac.compare_digest(
        nonce.encode(), expected.nonce.encode()
    ):
        raise IdTokenRejected("the ID token's nonce is not the one this sign-in sent")
    return claims


def _header(token: str) -> dict[str, Any]:
    try:
        header: dict[str, Any] = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError, UnicodeError) as exc:
        raise IdTokenRejected("the ID token is not a signed JWT (JWS compact form)") from exc
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise IdTokenRejected(
            f"the ID token's algorithm {alg!r} is not allowed "
            f"(only {', '.join(ALLOWED_ALGORITHMS)})"
        )
    return header


def _check_authorized_party(claims: dict[str, Any], client_id: str) -> None:
    """OIDC Core §3.1.3.7 (4)-(5): with several audiences ``azp`` must be present; when
    present it must be our client id."""
    audience = claims["aud"]
    several = isinstance(audience, list) and len(audience) > 1
    azp = claims.get("azp")
    if several and azp is None:
        raise IdTokenRejected("the ID token has several audiences and no azp")
    if azp is not None and azp != client_id:
        raise IdTokenRejected(f"the ID token's azp {azp!r} is not this client")
