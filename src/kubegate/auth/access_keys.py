"""Access key secrets: recognisable, checksummed, stored only as their SHA-256.

A key is ``kgak_`` followed by 36 random base62 characters (214 bits) and 6 base62
characters of the CRC32 of the random part, the shape of GitHub's tokens: a secret scanner
finds it by its prefix and confirms it by its checksum without asking kubegate, and kubegate
refuses a mistyped one (:func:`looks_valid`) before any database read. A CRC32 catches every
change of one character and every swap of two neighbours within the random part, since
either is an error burst shorter than 32 bits. The checksum proves nothing about who made
the key: only the stored SHA-256 does.
"""

from __future__ import annotations

import secrets
import string
import zlib

from kubegate.auth.hashing import secret_hash

PREFIX = "kgak_"
RANDOM_LENGTH = 36
CHECKSUM_LENGTH = 6
LENGTH = len(PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH
HINT_LENGTH = 4

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_INDEX = {char: value for value, char in enumerate(ALPHABET)}


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def checksum(random_part: str) -> str:
    """The 6 base62 characters of the CRC32 of ``random_part`` (62^6 > 2^32: no loss)."""
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def compose(random_part: str) -> str:
    """The key made of ``random_part``: prefix, the part, its checksum."""
    return f"{PREFIX}{random_part}{checksum(random_part)}"


def new_key() -> str:
    """A fresh access key secret (shown once, never stored)."""
    return compose("".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH)))


def is_access_key(text: str) -> bool:
    """True when ``text`` claims to be an access key (it has the prefix), valid or not."""
    return text.startswith(PREFIX)


def looks_valid(text: str) -> bool:
    """True when ``text`` has an access key's prefix, length, alphabet and a checksum that
    matches: worth a database lookup. Says nothing about whether the key exists."""
    if len(text) != LENGTH or not text.startswith(PREFIX):
        return False
    body = text[len(PREFIX) :]
    if any(char not in _INDEX for char in body):
        return False
    return checksum(body[:RANDOM_LENGTH]) == body[RANDOM_LENGTH:]


def stored_hash(key: str) -> str:
    """What the database keeps of a key: its SHA-256 (the key has 214 random bits)."""
    return secret_hash(key)


def hint(key: str) -> str:
    """The last characters of a key, shown in lists to tell keys apart (``…x7Qa``)."""
    return key[-HINT_LENGTH:]
