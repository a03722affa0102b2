"""The database's own outgoing settings, for automated mail that no user sends (admin only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from sendas.db.models import SystemOutgoing, utcnow
from sendas.errors import FieldProblem, ValidationFailed
from sendas.schemas import SystemOutgoingIn, SystemOutgoingOut
from sendas.secrets import SecretBox
from sendas.services.common import Actor, audit, format_server, parse_server_field
from sendas.services.connections import DEFAULT_CAP, connection_problems
from sendas.services.secret_binding import Destination, rebinding_problem
from sendas.smtp import server_warnings

SYSTEM_ID = 1


def get_settings_row(session: Session) -> SystemOutgoing:
    """The settings (the row migration 0004 creates); reading never writes: without the
    row, an unsaved one with the defaults. Writers add it (:func:`update_system_outgoing`)."""
    row = session.get(SystemOutgoing, SYSTEM_ID)
    if row is None:
        row = SystemOutgoing(**_DEFAULTS, id=SYSTEM_ID, updated_at=utcnow())
    return row


def _column_defaults() -> dict[str, Any]:
    table = SystemOutgoing.__table__
    return {
        c.key: c.default.arg for c in table.columns if c.default is not None and c.default.is_scalar
    }


_DEFAULTS = _column_defaults()


def is_configured(row: SystemOutgoing) -> bool:
    return bool(row.from_address and row.smtp_host)


def system_out(row: SystemOutgoing) -> SystemOutgoingOut:
    return SystemOutgoingOut(
        from_address=row.from_address,
        from_name=row.from_name,
        reply_to=row.reply_to,
        smtp_server=format_server(row.smtp_host, row.smtp_port),
        smtp_username=row.smtp_username,
        tls=row.tls,
        allow_plaintext_auth=row.allow_plaintext_auth,
        ca_bundle_set=bool(row.ca_bundle),
        delay_ms=row.delay_ms,
        max_connections=row.max_connections,
        password_set=row.smtp_password_enc is not None,
        configured=is_configured(row),
        last_test=row.last_test,
        warnings=server_warnings(row.smtp_host) if row.smtp_host else [],
        updated_at=row.updated_at,
    )


def destination(row: SystemOutgoing) -> Destination:
    """Where the stored password is sent."""
    return Destination.of(
        row.smtp_host, row.smtp_port, row.tls, row.allow_plaintext_auth, row.ca_bundle
    )


def _problems(row: SystemOutgoing, before: Destination, fields: set[str]) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    if row.smtp_host and not row.from_address:
        problems.append(FieldProblem(("body", "from_address"), "is required"))
    if row.smtp_password_enc and "smtp_password" not in fields:
        rebound = rebinding_problem(before, destination(row), "smtp_password")
        problems += [rebound] if rebound else []
    return problems


def _apply_pace(row: SystemOutgoing, data: SystemOutgoingIn, cap: int) -> list[FieldProblem]:
    """Delay and connections at once, checked together (more than one only without delay)."""
    fields = data.model_fields_set
    if "delay_ms" in fields and data.delay_ms is not None:
        row.delay_ms = data.delay_ms
    if "max_connections" in fields and data.max_connections is not None:
        row.max_connections = data.max_connections
    if not fields & {"max_connections", "delay_ms"}:
        return []
    return connection_problems(row.max_connections or 1, row.delay_ms or 0, cap)


def update_system_outgoing(
    session: Session,
    actor: Actor,
    data: SystemOutgoingIn,
    box: SecretBox,
    *,
    max_connections_cap: int = DEFAULT_CAP,
) -> SystemOutgoing:
    """Apply the given fields (absent ones keep their value); raises ValidationFailed."""
    actor.require_admin()
    row = get_settings_row(session)
    session.add(row)  # a no-op once the row exists
    fields = data.model_fields_set
    before = destination(row)
    if "tls" in fields and data.tls:
        row.tls = data.tls
    for name in ("from_address", "from_name", "smtp_username"):
        if name in fields:
            setattr(row, name, getattr(data, name) or "")
    if "reply_to" in fields:
        row.reply_to = data.reply_to or None
    pace_problems = _apply_pace(row, data, max_connections_cap)
    if "allow_plaintext_auth" in fields and data.allow_plaintext_auth is not None:
        row.allow_plaintext_auth = data.allow_plaintext_auth
    if "ca_bundle" in fields:
        row.ca_bundle = data.ca_bundle
    if "smtp_server" in fields:
        if data.smtp_server:
            row.smtp_host, row.smtp_port, _ = parse_server_field(
                "smtp_server", data.smtp_server, row.tls
            )
        else:
            row.smtp_host = ""
    if "smtp_password" in fields:
        pw = data.smtp_password.get_secret_value() if data.smtp_password else ""
        row.smtp_password_enc = box.encrypt(pw) if pw else None
    problems = _problems(row, before, fields) + pace_problems
    if problems:
        raise ValidationFailed(problems)
    session.flush()
    audit(
        session,
        actor,
        "system_outgoing.update",
        "system_outgoing",
        SYSTEM_ID,
        owner_id=None,
        detail={"fields": sorted(fields)},
    )
    return row
