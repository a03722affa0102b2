"""``create_app(settings)``: the FastAPI application, built per call (never at import)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from sendas import __version__
from sendas.api.auth_first import AuthenticateFirst
from sendas.api.body_limit import install_body_limit
from sendas.api.errors import ERROR_RESPONSES, install_error_handlers
from sendas.api.routers import (
    aliases,
    audit,
    campaigns,
    imap_accounts,
    oauth_clients,
    suppressions,
    system,
    users,
)
from sendas.api.routers import messages as messages_router
from sendas.config import Settings
from sendas.context import AppContext

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, ctx: AppContext | None = None) -> FastAPI:
    """Build the app. Migrations run here, so a new database is ready before requests."""
    settings = settings or Settings()
    context = ctx or AppContext.build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hooks = list(app.state.startup_hooks)
        stops = [await hook(context) for hook in hooks]
        try:
            yield
        finally:
            for stop in reversed(stops):
                if stop is not None:
                    await stop()

    app = FastAPI(title="sendas", version=__version__, lifespan=lifespan)
    app.state.ctx = context
    app.state.startup_hooks = []
    install_error_handlers(app)

    api = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
    for module in (
        users,
        aliases,
        imap_accounts,
        system,
        oauth_clients,
        audit,
        campaigns,
        messages_router,
        suppressions,
    ):
        api.include_router(module.router)
    app.include_router(api)
    # Inside the session middleware that install_web adds: body cap first, then who is asking.
    app.add_middleware(AuthenticateFirst)
    install_body_limit(app, settings)
    from sendas.web import install_web  # pages, session cookie (HttpOnly, SameSite=Lax), static

    install_web(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
