"""The portal's times: relative at a glance, exact on hover."""

from __future__ import annotations

import datetime as dt

import pytest

from kubegate.server.portal_format import as_sentence, exact_time, relative_time

NOW = dt.datetime(2026, 12, 3, 8, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("seconds_ago", "shown"),
    [
        (0, "just now"),
        (44, "just now"),
        (45, "1 minute ago"),
        (60, "1 minute ago"),
        (119, "1 minute ago"),
        (120, "2 minutes ago"),
        (3600, "1 hour ago"),
        (3 * 3600 + 59 * 60, "3 hours ago"),
        (86400, "1 day ago"),
        (10 * 86400, "10 days ago"),
        (-7200, "in 2 hours"),
        (-50, "in 1 minute"),
    ],
)
def test_relative_time_says_whole_units(seconds_ago: int, shown: str) -> None:
    assert relative_time(NOW - dt.timedelta(seconds=seconds_ago), NOW) == shown


def test_exact_time_is_utc_whatever_the_zone() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert exact_time(dt.datetime(2026, 12, 3, 9, 30, 5, tzinfo=paris)) == "2026-12-03 08:30:05 UTC"


@pytest.mark.parametrize(
    ("message", "opening"),
    [
        (
            "namespace 'Team_A' must be a DNS-1123 label.",
            "Namespace 'Team_A' must be a DNS-1123 label",
        ),
        ("You do not have access", "You do not have access"),
        ("duration_seconds must be at least 600", "duration_seconds must be at least 600"),
        ("", ""),
    ],
)
def test_a_message_opens_a_sentence_but_a_field_name_keeps_its_spelling(
    message: str, opening: str
) -> None:
    assert as_sentence(message) == opening
