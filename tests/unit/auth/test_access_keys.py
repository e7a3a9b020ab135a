from __future__ import annotations

import hashlib
import random

import pytest

from kubegate.auth import access_keys
from kubegate.auth.access_keys import ALPHABET, LENGTH, PREFIX, RANDOM_LENGTH

SEEDED = random.Random(15)
SAMPLES = [
    access_keys.compose("".join(SEEDED.choice(ALPHABET) for _ in range(RANDOM_LENGTH)))
    for _ in range(50)
]


def test_a_new_key_has_the_prefix_the_length_and_passes() -> None:
    key = access_keys.new_key()
    assert key.startswith(PREFIX)
    assert len(key) == LENGTH == 47
    assert access_keys.looks_valid(key)


def test_new_keys_differ() -> None:
    assert len({access_keys.new_key() for _ in range(100)}) == 100


@pytest.mark.parametrize("key", SAMPLES[:5])
def test_every_one_character_typo_is_refused(key: str) -> None:
    for position in range(len(PREFIX), len(key)):
        for char in "0aZz9":
            if char != key[position]:
                typo = key[:position] + char + key[position + 1 :]
                assert not access_keys.looks_valid(typo), (position, char)


@pytest.mark.parametrize("key", SAMPLES)
def test_swapping_two_neighbouring_characters_is_refused(key: str) -> None:
    for position in range(len(PREFIX), len(key) - 1):
        a, b = key[position], key[position + 1]
        if a != b:
            swapped = key[:position] + b + a + key[position + 2 :]
            assert not access_keys.looks_valid(swapped), position


@pytest.mark.parametrize(
    "text",
    [
        "",
        PREFIX,
        "kg_api_" + "a" * 43,
        SAMPLES[0][:-1],
        SAMPLES[0] + "0",
        SAMPLES[0].replace(PREFIX, "kgaK_"),
        SAMPLES[0][:10] + "-" + SAMPLES[0][11:],
        SAMPLES[0][:10] + "é" + SAMPLES[0][11:],
    ],
)
def test_malformed_keys_are_refused(text: str) -> None:
    assert not access_keys.looks_valid(text)


def test_it_is_stored_as_its_sha256_and_hinted_by_its_last_four() -> None:
    key = SAMPLES[0]
    assert access_keys.stored_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert access_keys.hint(key) == key[-4:]


def test_the_prefix_tells_keys_from_other_tokens() -> None:
    assert access_keys.is_access_key(SAMPLES[0])
    assert not access_keys.is_access_key("kg_api_abc")
