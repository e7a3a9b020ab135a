"""How long the agent waits before dialling again: jittered exponential backoff.

The delay doubles from :data:`BASE` per failed attempt up to :data:`CAP`, and each wait is
drawn from the upper half of that (``[d/2, d]``), so agents that lost the server together do
not all come back in the same instant, yet none waits longer than the cap.
"""

from __future__ import annotations

import random

BASE = 0.5
CAP = 30.0


def reconnect_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt number ``attempt + 1`` (``attempt`` counts from 0)."""
    ceiling = min(CAP, BASE * 2 ** min(attempt, 16))
    return (rng or random).uniform(ceiling / 2, ceiling)
