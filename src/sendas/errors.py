"""The one exception hierarchy of sendas.

Every error raised on purpose by sendas derives from :class:`SendasError`. Errors carry
fields (``field``, ``step``, ``code``, ``recipient``...) so that callers branch on types and
attributes, never on message text. No message text ever contains a secret.
"""

from __future__ import annotations

from dataclasses import dataclass


class SendasError(Exception):
    """Root of every error sendas raises on purpose."""


# --- configuration and storage ------------------------------------------------------------


class ConfigError(SendasError):
    """A setting is missing or malformed."""


class SecretKeyError(SendasError):
    """Stored secrets cannot be decrypted with the configured key(s)."""


# --- input and ownership (mapped to HTTP by the API, to exit codes by the CLI) ---------------


@dataclass(frozen=True)
class FieldProblem:
    """One bad field: ``loc`` as FastAPI reports it (e.g. ``("body", "delay_ms")``)."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"


class ValidationFailed(SendasError):
    """Input was refused; nothing was written. Carries one problem per bad field."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in problems))

    @classmethod
    def one(cls, field: str, msg: str, type_: str = "value_error") -> ValidationFailed:
        return cls([FieldProblem(("body", field), msg, type_)])


class TooLarge(ValidationFailed):
    """Input over a configured size or count limit (HTTP 413); nothing was written."""


class NotFound(SendasError):
    """The object does not exist, or belongs to someone else (never say which)."""

    def __init__(self, kind: str, ident: object) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"{kind} {ident} not found")


class Forbidden(SendasError):
    """The caller is known but lacks the role for this action."""


class Conflict(SendasError):
    """The action conflicts with the current state (e.g. an IMAP account still in use)."""

    def __init__(self, msg: str, *, blockers: list[str] | None = None) -> None:
        self.blockers = blockers or []
        super().__init__(msg)


class AuthenticationRequired(SendasError):
    """No valid credentials were presented."""


class RateLimited(SendasError):
    """A per-user limit is reached for now; ``retry_after`` seconds until it may pass.

    ``setting`` names the ``SENDAS_*`` variable that sets the limit (429 over HTTP).
    """

    def __init__(self, msg: str, *, setting: str, retry_after: int) -> None:
        self.setting = setting
        self.retry_after = max(1, retry_after)
        super().__init__(msg)


class AccountDisabled(AuthenticationRequired):
    """The credentials are right but an admin disabled the account."""


# --- mail transport --------------------------------------------------------------------------


class TransportError(SendasError):
    """Base for SMTP/IMAP/OAuth failures. ``step`` names where it happened."""

    def __init__(
        self,
        msg: str,
        *,
        step: str = "",
        code: int | None = None,
        server_reply: str = "",
        hint: str = "",
    ) -> None:
        self.step = step
        self.code = code
        self.server_reply = server_reply
        self.hint = hint
        super().__init__(msg)


class MailConnectionError(TransportError, ConnectionError):
    """Could not reach or keep a link to the server (DNS, TCP, TLS, dropped link)."""


class MailTimeoutError(TransportError, TimeoutError):
    """The server did not answer in time."""


class TlsError(MailConnectionError):
    """TLS handshake failed, or TLS was required and not offered."""


class AuthError(TransportError):
    """The server refused the credentials; the alias needs attention."""


class ReplyError(TransportError):
    """The server answered with an error reply. ``kind`` is the classification."""

    def __init__(
        self,
        msg: str,
        *,
        kind: str,
        step: str = "",
        code: int | None = None,
        server_reply: str = "",
        hint: str = "",
        recipient: str | None = None,
    ) -> None:
        self.kind = kind
        self.recipient = recipient
        super().__init__(msg, step=step, code=code, server_reply=server_reply, hint=hint)


class DeliveryUnknown(TransportError):
    """The link broke after the message data went out: the server may have accepted it."""


class SmtpUtf8Required(TransportError):
    """An address needs SMTPUTF8 and the server does not offer it; nothing was sent."""


class OAuthError(TransportError):
    """An OAuth grant could not be used or refreshed."""


class ReauthRequired(OAuthError):
    """The grant was revoked or expired: the owner must sign in again."""


class TemplateError(SendasError):
    """A form-letter template is invalid or refers to a missing field."""

    def __init__(self, msg: str, *, field: str | None = None, recipient: str | None = None):
        self.field = field
        self.recipient = recipient
        super().__init__(msg)


class OutboundRefused(TransportError):
    """The outbound policy refuses the server's address (loopback, private, link-local,
    metadata...); nothing was connected. ``address`` is the refused address."""

    def __init__(self, msg: str, *, step: str, address: str, hint: str = "") -> None:
        self.address = address
        super().__init__(msg, step=step, hint=hint)


class TemplateOverBudget(TemplateError):
    """Rendering one recipient took longer, or wrote more, than the limits allow."""


class TemplateTimedOut(TemplateOverBudget):
    """Rendering one recipient ran past the time limit. At send time that is load (the
    recipient was rendered within limits at enqueue), so the outbox retries it later."""
