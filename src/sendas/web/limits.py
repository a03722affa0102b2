"""Test Connection from the pages counts against the same per-user limit as the API."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from sendas.context import AppContext
from sendas.errors import RateLimited
from sendas.services import quotas
from sendas.services.common import Actor
from sendas.web.render import page, refused_status


async def test_refused(ctx: AppContext, actor: Actor) -> RateLimited | None:
    """Count one test of ``actor``; the refusal when ``SENDAS_TESTS_PER_MINUTE`` is reached."""
    try:
        await run_in_threadpool(quotas.take_test, ctx.db, actor, quotas.Limits.of(ctx.settings))
    except RateLimited as exc:
        return exc
    return None


def refused_result(request: Request, refused: RateLimited, fields: Sequence[str]) -> Response:
    """The Test Connection fragment saying why nothing was tested (429, ``Retry-After``)."""
    status_code, headers = refused_status(refused)
    return page(
        request,
        "_test_result.html",
        {"result": None, "errors": {}, "fields": fields, "refused": f"{refused}."},
        status_code=status_code,
        headers=headers,
    )
