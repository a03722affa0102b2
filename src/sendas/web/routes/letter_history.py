"""The history of form letters: the list page (newest first, a page at a time)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sendas.services.campaigns import history
from sendas.web.deps import WebActor, WebCtx
from sendas.web.render import page
from sendas.web.routes.letters import outcome_summary

router = APIRouter()

PAGE_SIZE = 50


@router.get("/campaigns")
def campaign_list(
    request: Request, ctx: WebCtx, actor: WebActor, before_id: int | None = None
) -> Response:
    if before_id is not None and not 1 <= before_id < 2**31:
        before_id = None
    with ctx.db.read() as s:
        result = history.list_campaigns(s, actor, before_id=before_id, limit=PAGE_SIZE)
    return page(
        request,
        "mail/campaigns.html",
        {
            "items": result.items,
            "summaries": {
                c.id: outcome_summary(c.counts, cancelled=c.status == "cancelled")
                for c in result.items
            },
            "next_before_id": result.next_before_id,
            "before_id": before_id,
        },
    )
