"""How the agent reads the tunnel protocol the server chose (``tunnel/handshake.py``)."""

from __future__ import annotations

import pytest

from kubegate.errors import TunnelProtocolError
from kubegate.tunnel.handshake import accepted_protocol, choose_protocol


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [("1", 1), ("2", 2), ("1, 2", 2), ("2,1", 2), ("1, 99", 1), ("99", None), (None, None)],
)
def test_the_server_chooses_the_highest_protocol_both_speak(
    offered: str | None, chosen: int | None
) -> None:
    assert choose_protocol(offered) == chosen


def test_a_server_that_names_no_protocol_speaks_protocol_1() -> None:
    assert accepted_protocol(None) == 1


@pytest.mark.parametrize("named", ["1", "2"])
def test_the_agent_speaks_the_protocol_the_server_named(named: str) -> None:
    assert accepted_protocol(named) == int(named)


@pytest.mark.parametrize("named", ["99", "1, 2", "", "two"])
def test_a_protocol_the_agent_did_not_offer_is_refused(named: str) -> None:
    with pytest.raises(TunnelProtocolError, match="not offered"):
        accepted_protocol(named)
