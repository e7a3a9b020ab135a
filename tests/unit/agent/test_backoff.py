import random

from hypothesis import given
from hypothesis import strategies as st

from kubegate.agent.backoff import BASE, CAP, reconnect_delay


@given(st.integers(min_value=0, max_value=10_000), st.integers())
def test_delay_never_exceeds_the_cap_nor_falls_below_half_the_step(attempt: int, seed: int) -> None:
    delay = reconnect_delay(attempt, random.Random(seed))
    ceiling = min(CAP, BASE * 2 ** min(attempt, 16))
    assert ceiling / 2 <= delay <= ceiling <= CAP


def test_delays_grow_then_stay_at_the_cap() -> None:
    rng = random.Random(7)
    ceilings = [max(reconnect_delay(n, rng) for _ in range(50)) for n in range(10)]
    assert ceilings[0] <= BASE < ceilings[2] < ceilings[4]
    assert all(CAP / 2 <= c <= CAP for c in ceilings[7:])


def test_agents_that_fail_together_spread_out() -> None:
    rng = random.Random(1)
    assert len({round(reconnect_delay(5, rng), 3) for _ in range(20)}) > 10
