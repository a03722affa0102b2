"""The suppression list: /api/suppressions (addresses form letters skip)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from sendas.api.deps import ActorDep, CtxDep
from sendas.schemas import SuppressionIn, SuppressionOut, SuppressionPage
from sendas.schemas.fields import ObjectId
from sendas.services import suppressions as svc

router = APIRouter(prefix="/suppressions", tags=["suppressions"])


@router.get("")
def list_suppressions(
    ctx: CtxDep,
    actor: ActorDep,
    q: Annotated[str | None, Query(max_length=320, description="Part of the address.")] = None,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Continue after this page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=svc.MAX_LIMIT)] = 50,
) -> SuppressionPage:
    """Your suppressed addresses, newest first: hard bounces and those you added."""
    with ctx.db.read() as s:
        return svc.list_suppressions(s, actor, q=q, before_id=before_id, limit=limit)


@router.post("", status_code=status.HTTP_201_CREATED)
def add_suppression(ctx: CtxDep, actor: ActorDep, body: SuppressionIn) -> SuppressionOut:
    """Add an address by hand: later form letters skip it. An address already on the list
    is a 422 naming ``address``."""
    with ctx.db.write() as s:
        return svc.suppression_out(svc.add_suppression(s, actor, body))


@router.delete("/{suppression_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_suppression(ctx: CtxDep, actor: ActorDep, suppression_id: ObjectId) -> Response:
    """Take an address off the list: later form letters go to it again."""
    with ctx.db.write() as s:
        svc.remove_suppression(s, actor, suppression_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
