"""The audit log: /api/audit."""

from __future__ import annotations

from fastapi import APIRouter, Query

from sendas.api.deps import ActorDep, CtxDep
from sendas.schemas import AuditOut
from sendas.services.audit_log import list_events

router = APIRouter(tags=["audit"])


@router.get("/audit")
def audit(ctx: CtxDep, actor: ActorDep, limit: int = Query(200, ge=1, le=1000)) -> list[AuditOut]:
    with ctx.db.read() as s:
        return [
            AuditOut.model_validate(e, from_attributes=True) for e in list_events(s, actor, limit)
        ]
