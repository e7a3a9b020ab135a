"""How the ``metrics`` and ``metrics_token`` settings decide ``/metrics``'s protection."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubegate.settings import Settings

TOKEN = "0123456789abcdef0123"


def test_metrics_are_off_without_a_token() -> None:
    assert Settings.load().metrics_access() == "off"


def test_a_metrics_token_alone_means_token_protection() -> None:
    assert Settings.load(metrics_token=TOKEN).metrics_access() == "token"


def test_an_explicit_mode_wins() -> None:
    assert Settings.load(metrics="open").metrics_access() == "open"
    assert Settings.load(metrics="off", metrics_token=TOKEN).metrics_access() == "off"


def test_token_protection_without_a_token_stops_the_server() -> None:
    with pytest.raises(ValidationError, match="metrics = token needs metrics_token"):
        Settings.load(metrics="token")


def test_a_short_metrics_token_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings.load(metrics_token="short")


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings.load(metrics="public")


def test_the_token_never_shows_in_the_settings_repr() -> None:
    assert TOKEN not in repr(Settings.load(metrics_token=TOKEN))
