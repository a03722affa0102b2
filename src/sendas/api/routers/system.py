"""The database outgoing settings (admin): /api/system/outgoing."""

from __future__ import annotations

from fastapi import APIRouter

from sendas.api.deps import AdminDep, CtxDep, TestAllowed
from sendas.schemas import (
    ConnectionTestResult,
    SystemOutgoingIn,
    SystemOutgoingOut,
    SystemOutgoingTest,
)
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
        return svc.system_out(
            svc.update_system_outgoing(
                s, actor, body, ctx.secrets, max_connections_cap=ctx.settings.max_connections_cap
            )
        )


@router.post("/outgoing/test", dependencies=[TestAllowed])
async def outgoing_test(
    ctx: CtxDep, actor: AdminDep, body: SystemOutgoingTest | None = None
) -> ConnectionTestResult:
    """Test the outgoing settings (unsaved changes in the body are tested, not saved).

    With ``to``, one real test message goes to that address through the same SMTP path as
    automated mail; its last step, ``send``, carries the server's answer.
    """
    if body is not None and body.to:
        return await connection_test.send_system_test(ctx, actor, body.to, body)
    return await connection_test.check_system_outgoing(ctx, actor, body)
