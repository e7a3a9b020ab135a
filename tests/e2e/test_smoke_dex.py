"""Smoke tests: the test Dex issues real, verifiable ID tokens and refuses bad passwords."""

from __future__ import annotations

import time

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from testenv.dex import Dex, TokenRequestRefused

pytestmark = pytest.mark.e2e


def _dex_keys(dex: Dex) -> KeySet:
    creds = dex.credentials
    with httpx.Client(verify=creds.ssl_context(), timeout=10) as client:
        discovery = client.get(creds.discovery_url).raise_for_status().json()
        assert discovery["issuer"] == creds.issuer
        jwks = client.get(discovery["jwks_uri"]).raise_for_status().json()
    return KeySet.import_key_set(jwks)


def test_password_grant_id_token_verifies_against_dex_jwks(dex: Dex) -> None:
    creds = dex.credentials
    tokens = dex.password_grant()

    token = jwt.decode(tokens["id_token"], _dex_keys(dex), algorithms=["RS256"])
    claims = token.claims

    assert claims["iss"] == creds.issuer
    assert claims["aud"] == creds.client_id
    assert claims["email"] == creds.email
    assert claims["exp"] > time.time()


def test_wrong_password_is_refused_without_tokens(dex: Dex) -> None:
    with pytest.raises(TokenRequestRefused) as refused:
        dex.password_grant(password=dex.credentials.password + "-wrong")

    assert 400 <= refused.value.status_code < 500
    assert refused.value.error == "access_denied"
    assert not {"access_token", "id_token", "refresh_token"} & refused.value.body.keys()
