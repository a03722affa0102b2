"""Reading the audit log: admins see everything, a user the events on their own things."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sendas.db.models import AuditEvent
from sendas.services.common import Actor


def list_events(session: Session, actor: Actor, limit: int = 200) -> list[AuditEvent]:
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if not actor.is_admin:
        q = q.where(AuditEvent.owner_id == actor.id)
    return list(session.scalars(q))
