"""The device authorization grant's codes and its polling rules (RFC 8628), as plain values.

``kubegate login --sso`` gets two codes: a *device code* the CLI keeps and polls with (256
random bits, stored only as its SHA-256, like every bearer secret) and a *user code* the
person types or confirms in a signed-in browser. The user code is 8 letters from the 20
consonants of RFC 8628 §6.1 (no vowels, so no words; no digits, so no 0/O or 1/I), about 34.6
bits: guessing one within its ten minutes is what the per-session attempt limit on the
approval page is for. It is shown as ``BCDF-GHJK`` and stored normalised (upper case, no
separator); whatever a person types is normalised the same way.

:func:`poll_outcome` is the token endpoint's decision (RFC 8628 §3.5) for one poll, from the
stored state and the time, with no I/O.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
from dataclasses import dataclass

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 §3.5: a client told to slow down adds 5 seconds to its interval, for good.
SLOW_DOWN_STEP_SECONDS = 5


def new_device_code() -> str:
    """A device code: 256 random bits, URL-safe (only its SHA-256 is stored)."""
    return f"kg_device_{secrets.token_urlsafe(32)}"


def new_user_code() -> str:
    """A user code, normalised (8 letters of :data:`USER_CODE_ALPHABET`)."""
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def display_user_code(code: str) -> str:
    """A normalised user code as people read it: ``BCDF-GHJK``."""
    half = USER_CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def normalise_user_code(typed: str) -> str | None:
    """What a person typed (any case, with dashes or spaces) as a stored user code, or None
    when it cannot be one (wrong length or a letter the alphabet does not have)."""
    code = "".join(c for c in typed.upper() if c not in "- \t")
    if len(code) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in code):
        return None
    return code


class Outcome(enum.StrEnum):
    """What one poll of the token endpoint answers: a credential (``issue``) or the RFC 8628
    §3.5 / RFC 6749 §5.2 error code of that name."""

    issue = "issue"
    authorization_pending = "authorization_pending"
    slow_down = "slow_down"
    access_denied = "access_denied"
    expired_token = "expired_token"
    invalid_grant = "invalid_grant"


@dataclass(frozen=True, slots=True)
class PollState:
    """A stored device authorization as the token endpoint sees it."""

    status: str  # pending | approved | denied | used
    expires_at: dt.datetime
    interval_seconds: int
    last_polled_at: dt.datetime | None


def poll_outcome(state: PollState | None, now: dt.datetime) -> Outcome:
    """The answer to a poll of ``state`` (None: no such device code) at ``now``.

    A used code is ``invalid_grant`` (a credential is handed out once); an expired one
    ``expired_token``, whatever happened to it; a denied one ``access_denied``; an approved
    one ``issue``. A pending one is ``slow_down`` when polled sooner than its interval after
    the previous poll, else ``authorization_pending``.
    """
    if state is None or state.status == "used":
        return Outcome.invalid_grant
    if now >= state.expires_at:
        return Outcome.expired_token
    if state.status == "denied":
        return Outcome.access_denied
    if state.status == "approved":
        return Outcome.issue
    if state.last_polled_at is not None and now - state.last_polled_at < dt.timedelta(
        seconds=state.interval_seconds
    ):
        return Outcome.slow_down
    return Outcome.authorization_pending


ERROR_DESCRIPTIONS = {
    Outcome.authorization_pending: "the code has not been approved yet; poll again after "
    "the interval",
    Outcome.slow_down: "polling too fast; wait {interval} seconds between polls from now on",
    Outcome.access_denied: "the login was denied in the browser",
    Outcome.expired_token: "the code expired before it was approved; run kubegate login "
    "--sso again",
    Outcome.invalid_grant: "this device code is not valid (unknown, or its credential was "
    "already handed out); run kubegate login --sso again",
}


WRONG_CODES_ALLOWED = 5
WRONG_CODES_WINDOW_SECONDS = 15 * 60


class WrongCodeLimit:
    """Wrong user codes one signed-in person may enter on the approval page: at most
    :data:`WRONG_CODES_ALLOWED` within :data:`WRONG_CODES_WINDOW_SECONDS` (per server process).

    Keyed by the person rather than by the browser session, so that signing in again does not
    buy more guesses. Times are monotonic seconds, passed in.
    """

    def __init__(
        self, allowed: int = WRONG_CODES_ALLOWED, window: float = WRONG_CODES_WINDOW_SECONDS
    ) -> None:
        self.allowed = allowed
        self.window = window
        self._wrong: dict[str, list[float]] = {}

    def _recent(self, who: str, now: float) -> list[float]:
        recent = [t for t in self._wrong.get(who, ()) if now - t < self.window]
        if recent:
            self._wrong[who] = recent
        else:
            self._wrong.pop(who, None)
        return recent

    def blocked_for(self, who: str, now: float) -> int:
        """Seconds until ``who`` may try a code again (0: now)."""
        recent = self._recent(who, now)
        if len(recent) < self.allowed:
            return 0
        return max(1, int(recent[0] + self.window - now + 0.999))

    def wrong(self, who: str, now: float) -> None:
        """Count one wrong code of ``who``."""
        for stale in [k for k, times in self._wrong.items() if now - times[-1] >= self.window]:
            del self._wrong[stale]  # keep the table as small as the people guessing now
        self._wrong.setdefault(who, []).append(now)
