"""Help guides: Gmail, Microsoft 365, and what a failed Test Connection step means."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sendas.web.deps import PageNotFound, WebActor
from sendas.web.help import STEP_SECTIONS, TOPICS, TOPICS_BY_SLUG
from sendas.web.render import page

router = APIRouter()


@router.get("/help")
def help_index(request: Request, actor: WebActor) -> Response:
    return page(request, "help/index.html", {"topics": TOPICS})


@router.get("/help/{topic}")
def help_topic(request: Request, actor: WebActor, topic: str) -> Response:
    found = TOPICS_BY_SLUG.get(topic)
    if found is None:
        raise PageNotFound()
    return page(
        request,
        f"help/{found.slug}.html",
        {"topic": found, "topics": TOPICS, "steps": STEP_SECTIONS},
    )
