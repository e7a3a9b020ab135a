"""The Access view's templates and helpers without a server: nothing inline, lifetimes said."""

from __future__ import annotations

import re
from importlib.resources import files

import pytest

from kubegate.domain.access import dns1123_label_problem
from kubegate.server.portal_format import spoken_duration
from kubegate.server.routers.portal_access_pages import NAMESPACE_PATTERN

TEMPLATES = files("kubegate.server") / "templates" / "portal"


@pytest.mark.parametrize(
    "name", sorted(t.name for t in TEMPLATES.iterdir() if t.name.endswith(".html"))
)
def test_no_template_has_inline_script_style_or_handlers(name: str) -> None:
    text = (TEMPLATES / name).read_text()
    assert "style=" not in text and "<style" not in text
    assert "<script>" not in text
    assert not re.search(r"\son[a-z]+=", text), name


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (900, "15 minutes"),
        (60, "1 minute"),
        (3600, "1 hour"),
        (7200, "2 hours"),
        (90, "90 seconds"),
    ],
)
def test_token_lifetime_as_a_person_says_it(seconds: int, said: str) -> None:
    assert spoken_duration(seconds) == said


@pytest.mark.parametrize(
    "namespace", ["default", "team-a", "a", "0", "a-b-c", "Team", "-a", "a-", "a_b", "a.b", ""]
)
def test_the_browsers_pattern_agrees_with_the_servers_check(namespace: str) -> None:
    # The `pattern` attribute matches the whole value (with the `v` flag in Chromium; the
    # escaped "-" means the same in both flags).
    browser_ok = re.fullmatch(NAMESPACE_PATTERN, namespace) is not None
    assert browser_ok == (dns1123_label_problem(namespace) is None)
