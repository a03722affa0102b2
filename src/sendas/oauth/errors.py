"""Typed OAuth failures. All derive from :class:`sendas.errors.OAuthError`; callers branch
on the type and its fields (``reason``, ``error``), never on the text, which holds no
secret and no token."""

from __future__ import annotations

from sendas.errors import MailConnectionError, OAuthError, ReauthRequired

__all__ = [
    "AccessDenied",
    "IdTokenInvalid",
    "InvalidState",
    "NotConfigured",
    "OAuthError",
    "ProviderError",
    "ProviderUnavailable",
    "ReauthRequired",
]


class NotConfigured(OAuthError):
    """No application is registered for this provider (the admin registers one first)."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        super().__init__(
            f"sign-in with {provider} is not configured",
            step="oauth",
            hint="An administrator registers the application first.",
        )


class InvalidState(OAuthError):
    """The callback's ``state`` is unknown, reused, expired, or belongs to another user."""

    def __init__(self, msg: str = "the sign-in request is unknown, used or expired") -> None:
        super().__init__(msg, step="oauth", hint="Start the sign-in again.")


class AccessDenied(OAuthError):
    """The user declined at the provider's consent page. Nothing changed."""

    def __init__(self) -> None:
        super().__init__(
            "access was denied at the provider; nothing was changed",
            step="oauth",
            hint="Sign in again and allow access to send mail.",
        )


class ProviderError(OAuthError):
    """The provider answered with an OAuth error (``error``: its code, e.g.
    ``invalid_request``, ``invalid_grant`` at code exchange)."""

    def __init__(self, error: str, description: str = "") -> None:
        self.error = error
        self.description = description
        detail = f": {description}" if description else ""
        super().__init__(
            f"the provider refused the sign-in ({error}){detail}",
            step="oauth",
            server_reply=error,
            hint="Try again; if it keeps failing, check the application's registration.",
        )


class IdTokenInvalid(OAuthError):
    """The ID token failed validation. ``reason`` is one of ``signature``, ``issuer``,
    ``audience``, ``expired``, ``nonce``, ``email``, ``malformed``."""

    def __init__(self, reason: str, msg: str) -> None:
        self.reason = reason
        super().__init__(f"the ID token was refused: {msg}", step="oauth")


class ProviderUnavailable(OAuthError, MailConnectionError):
    """The token endpoint could not be reached or answered 5xx: retry later; the grant is
    fine (not a reason to ask the owner to sign in again)."""

    def __init__(self, msg: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(
            msg,
            step="auth",
            code=status,
            hint="The sign-in provider is unavailable; sending resumes when it answers.",
        )
