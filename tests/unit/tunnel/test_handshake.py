"""How the agent reads the tunnel protocol the server chose (``tunnel/handshake.py``)."""

from __future__ import annotations

import pytest

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.handshake import PROTOCOLS, accepted_protocol, choose_protocol


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [("2", 2), ("1, 2", 2), ("2,1", 2), ("2, 99", 2), ("1", None), ("99", None), (None, None)],
)
def test_the_server_chooses_the_highest_protocol_both_speak(
    offered: str | None, chosen: int | None
) -> None:
    assert choose_protocol(offered) == chosen


def test_this_version_speaks_protocol_2_only() -> None:
    assert PROTOCOLS == (2,)


def test_a_server_that_names_no_protocol_is_refused_as_older_than_protocol_2() -> None:
    with pytest.raises(TunnelProtocolError) as refused:
        accepted_protocol(None)
    assert "named no tunnel protocol" in str(refused.value)
    assert "speaks 2" in str(refused.value) and "upgrade the server" in str(refused.value)


def test_the_agent_speaks_the_protocol_the_server_named() -> None:
    assert accepted_protocol("2") == 2


@pytest.mark.parametrize("named", ["1", "99", "1, 2", "", "two"])
def test_a_protocol_the_agent_did_not_offer_is_refused(named: str) -> None:
    with pytest.raises(TunnelProtocolError, match="not offered"):
        accepted_protocol(named)
