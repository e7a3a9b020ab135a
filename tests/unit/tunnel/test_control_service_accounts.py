"""Schema 2 of the control messages: service accounts in desired/results, token messages."""

from __future__ import annotations

import json

import pytest

from kubegate.domain.access import GrantSpec, Role, ServiceAccountSpec
from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.control import (
    SCHEMA_VERSIONS,
    SERVICE_ACCOUNTS_SCHEMA,
    ControlMessage,
    Desired,
    GrantResult,
    Results,
    ServiceAccountResult,
    TokenAnswer,
    TokenRequest,
    decode_message,
    encode_message,
)

ACCOUNT = ServiceAccountSpec("s1", "ci", "ci-deployer", Role.EDIT, cluster_wide=False)
DESIRED = Desired(
    revision=3,
    grants=(GrantSpec("g1", "a@example.com", Role.VIEW, None),),
    service_accounts=(ACCOUNT, ServiceAccountSpec("s2", "ci", "auditor", Role.VIEW, True)),
)
RESULTS = Results(
    revision=3,
    results=(GrantResult("g1", "applied"),),
    service_accounts=(ServiceAccountResult("s1", "failed", 'namespaces "ci" not found'),),
)
REQUEST = TokenRequest("r1", "ci", "ci-deployer", 3600)
BREAK_GLASS = TokenRequest("r2", "kubegate-system", "kubegate-break-glass", 600, True)
ISSUED = TokenAnswer("r1", token="eyJhbGciOi.secret", expires_at="2026-12-02T10:00:00Z")
REFUSED = TokenAnswer("r1", error='serviceaccounts "x" not found')


def test_this_build_speaks_the_service_account_schema() -> None:
    assert SERVICE_ACCOUNTS_SCHEMA in SCHEMA_VERSIONS
    assert 1 in SCHEMA_VERSIONS  # and still the first, for older agents


@pytest.mark.parametrize("message", [DESIRED, RESULTS, REQUEST, BREAK_GLASS, ISSUED, REFUSED])
def test_schema_2_messages_round_trip(message: ControlMessage) -> None:
    assert decode_message(encode_message(message)) == message


def test_desired_wire_format_of_a_service_account() -> None:
    assert json.loads(encode_message(DESIRED))["service_accounts"][0] == {
        "service_account_id": "s1",
        "namespace": "ci",
        "name": "ci-deployer",
        "role": "edit",
        "scope": "namespace",
    }


def test_without_service_accounts_the_messages_are_what_schema_1_peers_know() -> None:
    plain = Desired(revision=1, grants=())
    assert "service_accounts" not in json.loads(encode_message(plain))
    assert "service_accounts" not in json.loads(encode_message(Results(1, ())))
    # ... and a schema 1 message decodes with none.
    old = b'{"type":"desired","revision":1,"grants":[]}'
    assert decode_message(old) == plain


def test_a_token_never_shows_in_the_answers_repr() -> None:
    assert "secret" not in repr(ISSUED)


def wire(obj: object) -> bytes:
    return json.dumps(obj).encode()


SA = {
    "service_account_id": "s1",
    "namespace": "ci",
    "name": "x",
    "role": "edit",
    "scope": "namespace",
}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            wire(
                {
                    "type": "desired",
                    "revision": 1,
                    "grants": [],
                    "service_accounts": [{**SA, "role": "root"}],
                }
            ),
            "role must be one of",
        ),
        (
            wire(
                {
                    "type": "desired",
                    "revision": 1,
                    "grants": [],
                    "service_accounts": [{**SA, "scope": "all"}],
                }
            ),
            "scope must be 'cluster' or 'namespace'",
        ),
        (
            wire(
                {
                    "type": "desired",
                    "revision": 1,
                    "grants": [],
                    "service_accounts": [{**SA, "namespace": "Kube_System"}],
                }
            ),
            "namespace 'Kube_System'",
        ),
        (
            wire(
                {
                    "type": "desired",
                    "revision": 1,
                    "grants": [],
                    "service_accounts": [SA, {**SA, "service_account_id": "s2"}],
                }
            ),
            "names one ServiceAccount twice",
        ),
        (
            wire({"type": "desired", "revision": 1, "grants": [], "service_accounts": [SA, SA]}),
            "same service_account_id",
        ),
        (
            wire(
                {
                    "type": "token_request",
                    "request_id": "r",
                    "namespace": "ci",
                    "name": "x",
                    "expiration_seconds": 0,
                    "break_glass": False,
                }
            ),
            "expiration_seconds must be between 1",
        ),
        (
            wire(
                {
                    "type": "token_request",
                    "request_id": "r",
                    "namespace": "ci",
                    "name": "x",
                    "expiration_seconds": 60,
                    "break_glass": 1,
                }
            ),
            "break_glass must be a boolean",
        ),
        (
            wire(
                {"type": "token", "request_id": "r", "token": "t", "expires_at": "", "error": "no"}
            ),
            "exactly one of a token and an error",
        ),
        (
            wire({"type": "token", "request_id": "r", "token": "", "expires_at": "", "error": ""}),
            "exactly one of a token and an error",
        ),
    ],
)
def test_malformed_schema_2_messages_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(TunnelProtocolError, match=reason):
        decode_message(data)
