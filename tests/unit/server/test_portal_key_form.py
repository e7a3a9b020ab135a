"""The New access key form read into the REST API's request (server/portal_key_form.py), and
the admin kubeconfig page's lifetimes: plain values, no server."""

from __future__ import annotations

import datetime as dt

import pytest

from kubegate.errors import ValidationFailed
from kubegate.server.portal_key_form import (
    key_expiry,
    key_name,
    key_namespaces,
    key_request,
    key_scope,
)
from kubegate.server.routers.portal_admin_kubeconfig_pages import duration_choices

TODAY = dt.date(2026, 12, 3)
CLUSTER = "a" * 32


def test_a_number_of_days_is_the_days_from_now() -> None:
    assert key_expiry("90", "", TODAY) == (90, None)


def test_never_is_no_expiry_even_with_a_date_typed() -> None:
    assert key_expiry("never", "2027-01-01", TODAY) == (None, None)


def test_a_date_is_midnight_utc_at_its_start() -> None:
    assert key_expiry("date", " 2027-01-31 ", TODAY) == (
        None,
        dt.datetime(2027, 1, 31, tzinfo=dt.UTC),
    )


@pytest.mark.parametrize(
    ("choice", "on_date", "says"),
    [
        ("forever", "", "'forever' is not an expiry this form offers"),
        ("0", "", "not an expiry this form offers"),
        ("3651", "", "not an expiry this form offers"),
        ("-5", "", "not an expiry this form offers"),
        ("date", "", "enter the date the key stops working"),
        (
            "date",
            "31/01/2027",
            "'31/01/2027' is not a date: write it as YYYY-MM-DD, e.g. 2027-01-02",
        ),
        ("date", "2026-12-03", "not after today (2026-12-03, UTC)"),
        ("date", "2040-01-01", "more than 3650 days away"),
    ],
)
def test_an_expiry_the_form_does_not_offer_is_refused_in_words(
    choice: str, on_date: str, says: str
) -> None:
    with pytest.raises(ValidationFailed) as refused:
        key_expiry(choice, on_date, TODAY)
    assert says in refused.value.message


def test_a_name_is_trimmed_and_must_be_there_and_fit() -> None:
    assert key_name("  ci-deploy ") == "ci-deploy"
    with pytest.raises(ValidationFailed, match="give the key a name"):
        key_name("   ")
    with pytest.raises(ValidationFailed, match="201 characters long; make it at most 200"):
        key_name("x" * 201)


def test_namespaces_are_split_on_commas_and_spaces_each_once() -> None:
    assert key_namespaces(" dev, staging  dev,,prod ") == ["dev", "staging", "prod"]
    assert key_namespaces("  ") is None


def test_everything_is_no_scope_whatever_is_ticked() -> None:
    assert key_scope(False, [CLUSTER], {CLUSTER: "dev"}) is None


def test_ticked_clusters_become_the_scope_whole_or_by_namespace() -> None:
    other = "b" * 32
    scope = key_scope(True, [CLUSTER, other, CLUSTER], {CLUSTER: "dev", other: ""})
    assert scope is not None
    assert [(one.cluster, one.namespaces) for one in scope.clusters] == [
        (CLUSTER, ["dev"]),
        (other, None),
    ]


def test_a_limited_scope_needs_a_cluster() -> None:
    with pytest.raises(ValidationFailed, match="tick at least one cluster"):
        key_scope(True, [], {})


def test_the_request_is_the_rest_apis() -> None:
    body = key_request("ci", (30, None), None)
    assert (body.name, body.expires_in_days, body.expires_at, body.scope) == ("ci", 30, None, None)


def test_lifetimes_offered_run_up_to_the_cap_with_default_and_cap_among_them() -> None:
    assert duration_choices(3600, 4 * 3600) == [
        (600, "10 minutes"),
        (1800, "30 minutes"),
        (3600, "1 hour"),
        (7200, "2 hours"),
        (14400, "4 hours"),
    ]
    assert duration_choices(3600, 5400)[-1] == (5400, "90 minutes")
    assert duration_choices(600, 600) == [(600, "10 minutes")]
