"""The [oidc] policy on a verified token: verified email, allowed domains, the admin group."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from kubegate.auth.oidc_errors import DomainNotAllowed, EmailUnverified, IdTokenRejected
from kubegate.auth.oidc_identity import identity_from_claims
from kubegate.settings import OidcSettings
from tests.unit.auth.oidc_forgery import CLIENT_ID, ISSUER, claims


def settings(**values: Any) -> OidcSettings:
    return OidcSettings(issuer=ISSUER, client_id=CLIENT_ID, client_secret=SecretStr("s"), **values)


def test_identity_carries_issuer_subject_lowercased_email_and_name() -> None:
    identity = identity_from_claims(claims(email="Alice@Example.COM"), settings())

    assert (identity.issuer, identity.subject) == (ISSUER, "CiQ4ZjJlZmY")
    assert identity.email == "alice@example.com"
    assert identity.display_name == "Alice"
    assert identity.is_admin is None  # no admin_group: sign-in leaves roles alone


def test_unverified_email_is_refused_saying_so() -> None:
    with pytest.raises(EmailUnverified, match=r"alice@example.com.*email_verified is not true"):
        identity_from_claims(claims(email_verified=False), settings())


def test_missing_email_verified_counts_as_unverified() -> None:
    with pytest.raises(EmailUnverified):
        identity_from_claims(claims(email_verified=None), settings())


def test_email_verified_as_the_string_true_counts() -> None:
    assert identity_from_claims(claims(email_verified="true"), settings()).email


def test_domain_outside_the_allowed_ones_is_refused_naming_them() -> None:
    policy = settings(allowed_email_domains=["example.com", "Corp.Example"])

    with pytest.raises(DomainNotAllowed, match=r"other\.test.*@example\.com, @corp\.example"):
        identity_from_claims(claims(email="mallory@other.test"), policy)


def test_a_subdomain_is_not_the_allowed_domain() -> None:
    policy = settings(allowed_email_domains=["example.com"])

    with pytest.raises(DomainNotAllowed):
        identity_from_claims(claims(email="eve@evil.example.com"), policy)


def test_allowed_domain_signs_in() -> None:
    policy = settings(allowed_email_domains=["example.com"])

    assert identity_from_claims(claims(), policy).email == "alice@example.com"


def test_member_of_the_admin_group_is_admin() -> None:
    policy = settings(admin_group="kubegate-admins")

    assert identity_from_claims(claims(groups=["devs", "kubegate-admins"]), policy).is_admin


def test_outside_the_admin_group_is_no_admin() -> None:
    policy = settings(admin_group="kubegate-admins")

    assert identity_from_claims(claims(groups=["devs"]), policy).is_admin is False


def test_groups_from_the_configured_claim_and_a_single_string() -> None:
    policy = settings(groups_claim="roles", admin_group="ops")

    identity = identity_from_claims(claims(roles="ops"), policy)

    assert identity.groups == ("ops",)
    assert identity.is_admin


def test_email_from_the_configured_claim() -> None:
    identity = identity_from_claims(claims(upn="bob@example.com"), settings(email_claim="upn"))

    assert identity.email == "bob@example.com"


def test_token_without_email_is_refused_naming_the_claim() -> None:
    with pytest.raises(IdTokenRejected, match="'email' claim"):
        identity_from_claims(claims(email=None), settings())
