"""Email aliases: /api/aliases."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from sendas.api.deps import ActorDep, CtxDep, TestAllowed
from sendas.schemas import AliasCreate, AliasOut, AliasPatch, AliasTestIn, ConnectionTestResult
from sendas.schemas.fields import ObjectId
from sendas.services import aliases as svc
from sendas.services import connection_test

router = APIRouter(prefix="/aliases", tags=["aliases"])


def _with_warnings(out: AliasOut, warnings: list[str]) -> AliasOut:
    merged = list(dict.fromkeys([*out.warnings, *warnings]))
    return out.model_copy(update={"warnings": merged})


@router.get("")
def list_aliases(ctx: CtxDep, actor: ActorDep) -> list[AliasOut]:
    with ctx.db.read() as s:
        return [svc.alias_out(a) for a in svc.list_aliases(s, actor)]


@router.post("", status_code=status.HTTP_201_CREATED)
def create_alias(ctx: CtxDep, actor: ActorDep, body: AliasCreate) -> AliasOut:
    with ctx.db.write() as s:
        alias, warnings = svc.create_alias(
            s, actor, body, ctx.secrets, max_connections_cap=ctx.settings.max_connections_cap
        )
        return _with_warnings(svc.alias_out(alias), warnings)


@router.post("/test", dependencies=[TestAllowed])
async def alias_test_unsaved(
    ctx: CtxDep, actor: ActorDep, body: AliasTestIn
) -> ConnectionTestResult:
    """Test Connection with settings that are not saved yet; nothing is written."""
    changes = AliasPatch.model_construct(
        body.model_fields_set - {"alias_id"},
        **{k: getattr(body, k) for k in body.model_fields_set - {"alias_id"}},
    )
    return await connection_test.check_alias_settings(ctx, actor, changes, body.alias_id)


@router.post("/{alias_id}/test", dependencies=[TestAllowed])
async def alias_test_saved(
    ctx: CtxDep, actor: ActorDep, alias_id: ObjectId
) -> ConnectionTestResult:
    """Test Connection for a saved alias; the outcome becomes its ``last_test``."""
    return await connection_test.check_saved_alias(ctx, actor, alias_id)


@router.get("/{alias_id}")
def get_alias(ctx: CtxDep, actor: ActorDep, alias_id: ObjectId) -> AliasOut:
    with ctx.db.read() as s:
        return svc.alias_out(svc.get_alias(s, actor, alias_id))


@router.patch("/{alias_id}")
def update_alias(ctx: CtxDep, actor: ActorDep, alias_id: ObjectId, body: AliasPatch) -> AliasOut:
    with ctx.db.write() as s:
        alias, warnings = svc.update_alias(
            s,
            actor,
            alias_id,
            body,
            ctx.secrets,
            max_connections_cap=ctx.settings.max_connections_cap,
        )
        return _with_warnings(svc.alias_out(alias), warnings)


@router.delete("/{alias_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_alias(ctx: CtxDep, actor: ActorDep, alias_id: ObjectId) -> Response:
    with ctx.db.write() as s:
        svc.delete_alias(s, actor, alias_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
