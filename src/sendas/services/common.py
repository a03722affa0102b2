"""Small pieces every service uses: who is acting, audit events, server fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.orm import Session

from sendas.db.models import AuditEvent, User
from sendas.errors import FieldProblem, Forbidden, ValidationFailed
from sendas.net import host_port
from sendas.schemas import TlsMode

OPERATOR_ID = 0  # the person at the command line: an admin with no user row


@dataclass(frozen=True)
class Actor:
    """The user on whose behalf a service call runs."""

    id: int
    email: str
    is_admin: bool

    @classmethod
    def of(cls, user: User) -> Actor:
        return cls(user.id, user.email, user.is_admin)

    @property
    def is_operator(self) -> bool:
        return self.id == OPERATOR_ID

    def require_admin(self) -> None:
        if not self.is_admin:
            raise Forbidden("this action needs the admin role")


def audit(
    session: Session,
    actor: Actor | None,
    action: str,
    target_type: str,
    target_id: int | None,
    *,
    owner_id: int | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Record an event. ``detail`` must never hold a secret: callers pass field names only."""
    session.add(
        AuditEvent(
            actor_id=actor.id if actor and not actor.is_operator else None,
            owner_id=owner_id,
            action=action,
            target_type=target_type,
            target_id=target_id,
            detail=detail,
        )
    )


def format_server(host: str, port: int) -> str:
    return host_port(host, port) if host else ""


def parse_server_field(
    field: str, text: str, tls: str, *, fallback_port: int | None = None
) -> tuple[str, int, list[str]]:
    """Parse ``host:port`` for ``field``; a ValueError becomes a 422 naming the field."""
    from sendas.smtp import parse_server, server_warnings

    try:
        host, port = parse_server(text, cast(TlsMode, tls), fallback_port=fallback_port)
    except ValueError as exc:
        raise ValidationFailed([FieldProblem(("body", field), str(exc))]) from None
    return host, port, server_warnings(host)


OPERATOR = Actor(OPERATOR_ID, "(command line)", True)
