"""The device flow's codes and the token endpoint's answer to each poll (RFC 8628)."""

from __future__ import annotations

import datetime as dt

import pytest

from kubegate.auth.device_codes import (
    USER_CODE_ALPHABET,
    Outcome,
    PollState,
    WrongCodeLimit,
    display_user_code,
    new_device_code,
    new_user_code,
    normalise_user_code,
    poll_outcome,
)

NOW = dt.datetime(2026, 12, 2, 19, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=10)


def test_the_alphabet_has_no_vowels_and_no_digits_to_misread() -> None:
    assert len(USER_CODE_ALPHABET) == len(set(USER_CODE_ALPHABET)) == 20
    assert not set(USER_CODE_ALPHABET) & set("AEIOUY0123456789")


def test_user_codes_are_eight_letters_of_the_alphabet_shown_in_two_halves() -> None:
    codes = {new_user_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert len(code) == 8 and set(code) <= set(USER_CODE_ALPHABET)
        shown = display_user_code(code)
        assert shown == f"{code[:4]}-{code[4:]}"
        assert normalise_user_code(shown) == code


@pytest.mark.parametrize("typed", ["bcdf-ghjk", " BCDF GHJK ", "BcDfGhJk", "BCDF-\tGHJK"])
def test_what_a_person_types_is_normalised(typed: str) -> None:
    assert normalise_user_code(typed) == "BCDFGHJK"


@pytest.mark.parametrize(
    "typed", ["", "BCDF-GHJ", "BCDF-GHJKL", "ABCD-GHJK", "BCDF-GH1K", "BCDF_GHJK"]
)
def test_what_cannot_be_a_code_is_refused(typed: str) -> None:
    assert normalise_user_code(typed) is None


def test_device_codes_carry_256_random_bits() -> None:
    code = new_device_code()
    assert code.startswith("kg_device_") and len(code.removeprefix("kg_device_")) == 43
    assert new_device_code() != code


def state(status: str = "pending", polled: dt.datetime | None = None) -> PollState:
    return PollState(status, LATER, 5, polled)


@pytest.mark.parametrize(
    ("polled", "status", "outcome"),
    [
        (None, "pending", Outcome.authorization_pending),
        (NOW - dt.timedelta(seconds=5), "pending", Outcome.authorization_pending),
        (NOW - dt.timedelta(seconds=4.9), "pending", Outcome.slow_down),
        (NOW - dt.timedelta(seconds=1), "approved", Outcome.issue),
        (NOW - dt.timedelta(seconds=1), "denied", Outcome.access_denied),
        (None, "used", Outcome.invalid_grant),
    ],
)
def test_each_state_gets_its_rfc_answer(
    polled: dt.datetime | None, status: str, outcome: Outcome
) -> None:
    assert poll_outcome(state(status, polled), NOW) is outcome


def test_an_unknown_code_is_an_invalid_grant() -> None:
    assert poll_outcome(None, NOW) is Outcome.invalid_grant


@pytest.mark.parametrize("status", ["pending", "approved", "denied"])
def test_past_its_expiry_a_code_is_expired_whatever_happened_to_it(status: str) -> None:
    assert poll_outcome(state(status), LATER) is Outcome.expired_token


def test_a_used_code_stays_invalid_after_its_expiry() -> None:
    assert poll_outcome(state("used"), LATER) is Outcome.invalid_grant


def test_wrong_codes_block_a_person_for_the_rest_of_the_window() -> None:
    limit = WrongCodeLimit(allowed=3, window=60)
    for t in (0.0, 10.0, 20.0):
        assert limit.blocked_for("ann", t) == 0
        limit.wrong("ann", t)
    assert limit.blocked_for("ann", 21.0) == 39
    assert limit.blocked_for("bob", 21.0) == 0
    assert limit.blocked_for("ann", 60.0) == 0  # the first guess left the window
