"""IMAP accounts: /api/imap-accounts."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from sendas.api.deps import ActorDep, CtxDep, TestAllowed
from sendas.schemas import ConnectionTestResult, ImapCreate, ImapOut, ImapPatch
from sendas.schemas.fields import ObjectId
from sendas.services import connection_test
from sendas.services import imap_accounts as svc

router = APIRouter(prefix="/imap-accounts", tags=["imap"])


@router.get("")
def list_accounts(ctx: CtxDep, actor: ActorDep) -> list[ImapOut]:
    with ctx.db.read() as s:
        return [svc.imap_out(a) for a in svc.list_imap_accounts(s, actor)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_account(ctx: CtxDep, actor: ActorDep, body: ImapCreate) -> ImapOut:
    with ctx.db.write() as s:
        return svc.imap_out(svc.create_imap_account(s, actor, body, ctx.secrets))


@router.post("/test", dependencies=[TestAllowed])
async def imap_settings_test(
    ctx: CtxDep, actor: ActorDep, body: ImapCreate
) -> ConnectionTestResult:
    """Test an account's settings before saving it: log in, find the Sent folder. Nothing
    is stored; the password is only used for this test."""
    return await connection_test.check_imap_settings(ctx, actor, body)


@router.get("/{account_id}")
def get_account(ctx: CtxDep, actor: ActorDep, account_id: ObjectId) -> ImapOut:
    with ctx.db.read() as s:
        return svc.imap_out(svc.get_imap_account(s, actor, account_id))


@router.patch("/{account_id}")
def update_account(ctx: CtxDep, actor: ActorDep, account_id: ObjectId, body: ImapPatch) -> ImapOut:
    with ctx.db.write() as s:
        return svc.imap_out(svc.update_imap_account(s, actor, account_id, body, ctx.secrets))


@router.delete("/{account_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_account(ctx: CtxDep, actor: ActorDep, account_id: ObjectId) -> Response:
    with ctx.db.write() as s:
        svc.delete_imap_account(s, actor, account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{account_id}/test", dependencies=[TestAllowed])
async def imap_account_test(
    ctx: CtxDep, actor: ActorDep, account_id: ObjectId
) -> ConnectionTestResult:
    """Log in, find the Sent folder; nothing is written to the mailbox."""
    return await connection_test.check_imap_account(ctx, actor, account_id)
