"""The database outgoing settings (admin): /api/system/outgoing."""

from __future__ import annotations

from fastapi import APIRouter

from sendas.api.deps import AdminDep, CtxDep, TestAllowed
from sendas.schemas import ConnectionTestResult, SystemOutgoingIn, SystemOutgoingOut
from sendas.services import connection_test
from sendas.services import system_outgoing as svc

router = APIRouter(prefix="/system", tags=["system"])


@router.get("/outgoing")
def get_outgoing(ctx: CtxDep, actor: AdminDep) -> SystemOutgoingOut:
    with ctx.db.read() as s:
        return svc.system_out(svc.get_settings_row(s))


@router.put("/outgoing")
def put_outgoing(ctx: CtxDep, actor: AdminDep, body: SystemOutgoingIn) -> SystemOutgoingOut:
    with ctx.db.write() as s:
        return svc.system_out(svc.update_system_outgoing(s, actor, body, ctx.secrets))


@router.post("/outgoing/test", dependencies=[TestAllowed])
async def outgoing_test(
    ctx: CtxDep, actor: AdminDep, body: SystemOutgoingIn | None = None
) -> ConnectionTestResult:
    """Test the outgoing settings (unsaved changes in the body are tested, not saved)."""
    return await connection_test.check_system_outgoing(ctx, actor, body)
