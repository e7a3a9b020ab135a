"""Why an OpenID Connect sign-in failed: one class per page a person can meet.

Every class is a :class:`~kubegate.errors.KubegateError` with the HTTP status of its page and a
message that says what happened and what to do. The browser flow renders them as HTML
(``server/oidc_pages.py``); nothing here ever carries a token, a code or a secret. The
``message`` of :class:`IdTokenRejected` is for the server log only: the page shows a generic
sentence and a reference id, so a forged token teaches its author nothing.
"""

from __future__ import annotations

from typing import ClassVar

from kubegate.errors import KubegateError


class SignInFailed(KubegateError):
    """An OIDC sign-in that did not end in a session; ``title`` heads its page."""

    status = 400
    code = "sign_in_failed"
    reason = "BadRequest"
    title: ClassVar[str] = "Sign-in failed"
    #: Whether the page shows ``message`` (False: a generic sentence and the reference id).
    shown: ClassVar[bool] = True


class SsoNotConfigured(SignInFailed):
    """This server has no ``[oidc]`` provider."""

    status = 404
    code = "sso_not_configured"
    reason = "NotFound"
    title = "Single sign-on is not set up"


class ProviderUnavailable(SignInFailed):
    """The provider's discovery document, keys or token endpoint could not be reached."""

    status = 502
    code = "provider_unavailable"
    reason = "InternalError"
    title = "The sign-in provider cannot be reached"


class ProviderMisconfigured(SignInFailed):
    """The provider answered, but not as the settings say it should (another issuer, no
    endpoint, keys that are not a JWK set)."""

    status = 502
    code = "provider_misconfigured"
    reason = "InternalError"
    title = "The sign-in provider is not set up as kubegate expects"


class SignInCancelled(SignInFailed):
    """The person declined at the provider (``error=access_denied``)."""

    status = 403
    code = "sign_in_cancelled"
    reason = "Forbidden"
    title = "Sign-in cancelled"


class ProviderRefused(SignInFailed):
    """The provider answered the authorization or the code exchange with an OAuth error."""

    status = 400
    code = "provider_refused"
    title = "The sign-in provider refused the sign-in"


class SignInExpired(SignInFailed):
    """The callback's ``state`` names no sign-in under way: unknown, used, or too old."""

    status = 400
    code = "sign_in_expired"
    title = "This sign-in has expired"


class WrongBrowser(SignInFailed):
    """The callback arrived in a browser other than the one that started the sign-in."""

    status = 400
    code = "sign_in_wrong_browser"
    title = "This sign-in was started in another browser"


class IdTokenRejected(SignInFailed):
    """The ID token failed verification (signature, issuer, audience, time, nonce)."""

    status = 401
    code = "id_token_rejected"
    reason = "Unauthorized"
    title = "Sign-in could not be verified"
    shown = False


class UnknownSigningKey(IdTokenRejected):
    """The ID token names a key (``kid``) that the provider's JWK set does not have."""

    code = "unknown_signing_key"

    def __init__(self, kid: str | None) -> None:
        super().__init__(
            f"the ID token is signed with key {kid!r}, which the provider's JWKS lacks"
        )
        self.kid = kid


class EmailUnverified(SignInFailed):
    """The provider does not vouch for the person's email address."""

    status = 403
    code = "email_unverified"
    reason = "Forbidden"
    title = "Your email address is not verified"


class DomainNotAllowed(SignInFailed):
    """The email's domain is not in ``oidc.allowed_email_domains``."""

    status = 403
    code = "email_domain_not_allowed"
    reason = "Forbidden"
    title = "Your email domain may not sign in here"


class MemberDeactivated(SignInFailed):
    """The person's membership of the organisation is deactivated."""

    status = 403
    code = "member_deactivated"
    reason = "Forbidden"
    title = "Your access to this organisation is deactivated"


class SignInMisconfigured(SignInFailed):
    """kubegate's own settings cannot serve the sign-in (e.g. no such organisation)."""

    status = 500
    code = "sign_in_misconfigured"
    reason = "InternalError"
    title = "Single sign-on is not set up correctly"
