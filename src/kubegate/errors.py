"""kubegate's error tree: every expected failure is a :class:`KubegateError`."""

from __future__ import annotations


class KubegateError(Exception):
    """An expected failure, with a message a person can act on."""
