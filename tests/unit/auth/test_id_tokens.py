"""ID token verification refuses every forgery and mistake of OIDC Core §3.1.3.7."""

from __future__ import annotations

import time

import pytest
from joserfc.jwk import ECKey

from kubegate.auth.id_tokens import IdTokenExpectations, verify_id_token
from kubegate.auth.oidc_errors import IdTokenRejected, UnknownSigningKey
from tests.unit.auth.oidc_forgery import (
    CLIENT_ID,
    ISSUER,
    NONCE,
    claims,
    hmac_with_public_key,
    public_set,
    rsa_key,
    signed,
    unsigned,
    with_payload,
)

KEY = rsa_key()
KEYS = public_set(KEY)
EXPECTED = IdTokenExpectations(issuer=ISSUER, client_id=CLIENT_ID, nonce=NONCE)


def verify(token: str, **kw: object) -> dict[str, object]:
    return verify_id_token(token, KEYS, EXPECTED, now=int(time.time()), **kw)  # type: ignore[arg-type]


def refused(token: str, match: str) -> None:
    with pytest.raises(IdTokenRejected, match=match):
        verify(token)


def test_a_token_from_the_provider_verifies_and_answers_its_claims() -> None:
    verified = verify(signed(KEY, claims()))

    assert verified["email"] == "alice@example.com"
    assert verified["sub"] == "CiQ4ZjJlZmY"


def test_wrong_audience_is_refused() -> None:
    refused(signed(KEY, claims(aud="another-client")), "aud")


def test_audience_list_containing_us_with_azp_verifies() -> None:
    token = signed(KEY, claims(aud=["other", CLIENT_ID], azp=CLIENT_ID))

    assert verify(token)["azp"] == CLIENT_ID


def test_several_audiences_without_azp_are_refused() -> None:
    refused(signed(KEY, claims(aud=["other", CLIENT_ID])), "several audiences and no azp")


def test_azp_of_another_client_is_refused() -> None:
    refused(signed(KEY, claims(aud=["other", CLIENT_ID], azp="other")), "azp")


def test_wrong_issuer_is_refused() -> None:
    refused(signed(KEY, claims(iss="https://evil.example.com")), "iss")


def test_missing_issuer_is_refused() -> None:
    refused(signed(KEY, claims(iss=None)), "iss")


def test_expired_token_is_refused() -> None:
    past = int(time.time()) - 3600
    refused(signed(KEY, claims(iat=past - 600, exp=past)), "expired")


def test_expiry_within_the_leeway_is_tolerated() -> None:
    just_now = int(time.time()) - 10
    assert verify(signed(KEY, claims(exp=just_now)))["exp"] == just_now


def test_not_yet_valid_token_is_refused() -> None:
    refused(signed(KEY, claims(nbf=int(time.time()) + 3600)), "not yet valid")


def test_token_issued_in_the_future_is_refused() -> None:
    later = int(time.time()) + 3600
    refused(signed(KEY, claims(iat=later, exp=later + 600)), "issued in the future")


def test_missing_expiry_is_refused() -> None:
    refused(signed(KEY, claims(exp=None)), "exp")


def test_bad_signature_is_refused() -> None:
    impostor = rsa_key(kid=KEY.kid or "")  # same kid, another private key
    refused(signed(impostor, claims()), "signature does not verify")


def test_tampered_payload_is_refused() -> None:
    genuine = signed(KEY, claims())
    refused(with_payload(genuine, claims(email="mallory@example.com")), "signature")


def test_alg_none_is_refused() -> None:
    refused(unsigned(claims()), "algorithm 'none' is not allowed")


def test_hs256_signed_with_the_public_key_is_refused() -> None:
    refused(hmac_with_public_key(KEY, claims()), "algorithm 'HS256' is not allowed")


def test_unknown_kid_asks_for_the_keys_again() -> None:
    rotated = rsa_key(kid="test-key-2")

    with pytest.raises(UnknownSigningKey) as unknown:
        verify(signed(rotated, claims()))

    assert unknown.value.kid == "test-key-2"


def test_key_of_another_type_under_a_known_kid_is_refused() -> None:
    ec = ECKey.generate_key("P-256", parameters={"kid": KEY.kid or ""})
    refused(signed(ec, claims(), alg="ES256"), "no key")


def test_nonce_mismatch_is_refused() -> None:
    refused(signed(KEY, claims(nonce="another-sign-in")), "nonce")


def test_missing_nonce_is_refused() -> None:
    refused(signed(KEY, claims(nonce=None)), "nonce")


def test_missing_subject_is_refused() -> None:
    refused(signed(KEY, claims(sub=None)), "sub")


def test_garbage_is_refused() -> None:
    refused("not-a-jwt", "not a signed JWT")
