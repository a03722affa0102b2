"""Page routes, one module per screen group."""

from __future__ import annotations

from fastapi import APIRouter

from sendas.web.routes import admin, aliases, auth, imap, mail

router = APIRouter(include_in_schema=False)
for module in (auth, aliases, imap, admin, mail):
    router.include_router(module.router)
