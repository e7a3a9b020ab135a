"""The error tree's boundary helpers: ``map_exceptions`` and ``failure_reason``."""

from __future__ import annotations

import asyncio

import pytest

from kubegate.errors import (
    BadGateway,
    KubegateError,
    NotFound,
    TunnelProtocolError,
    Unavailable,
    failure_reason,
    map_exceptions,
)

MAPPING: dict[type[BaseException], type[KubegateError]] = {
    ConnectionError: BadGateway,
    OSError: Unavailable,
}


def test_a_mapped_exception_becomes_ours_with_its_reason_and_cause() -> None:
    with pytest.raises(BadGateway) as caught, map_exceptions(MAPPING, prefix="the apiserver: "):
        raise ConnectionResetError("connection reset by peer")
    assert caught.value.message == "the apiserver: connection reset by peer"
    assert isinstance(caught.value.__cause__, ConnectionResetError)


def test_the_first_matching_entry_wins() -> None:
    with pytest.raises(Unavailable), map_exceptions(MAPPING):
        raise FileNotFoundError("no such file")  # an OSError, not a ConnectionError


def test_our_own_errors_and_unmapped_ones_pass_unchanged() -> None:
    with pytest.raises(NotFound), map_exceptions(MAPPING):
        raise NotFound("no such cluster")
    with pytest.raises(ValueError), map_exceptions(MAPPING):
        raise ValueError("not mapped")


def test_cancellation_is_never_translated() -> None:
    with pytest.raises(asyncio.CancelledError), map_exceptions({BaseException: Unavailable}):
        raise asyncio.CancelledError


def test_failure_reason_is_short_and_names_an_empty_error_by_type() -> None:
    assert failure_reason(TimeoutError()) == "TimeoutError"
    long = failure_reason(OSError("x" * 500))
    assert len(long) == 200 and long.endswith("...")


def test_every_502_says_internal_error() -> None:
    assert BadGateway.reason == TunnelProtocolError.reason == "InternalError"
    assert BadGateway.status == TunnelProtocolError.status == 502
