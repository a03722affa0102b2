"""Page routes, one module per screen group."""

from __future__ import annotations

from fastapi import APIRouter

from sendas.web.routes.account import router as account_router
from sendas.web.routes.admin import router as admin_router
from sendas.web.routes.aliases import router as aliases_router
from sendas.web.routes.auth import router as auth_router
from sendas.web.routes.help import router as help_router
from sendas.web.routes.imap import router as imap_router
from sendas.web.routes.letter_history import router as letter_history_router
from sendas.web.routes.letters import router as letters_router
from sendas.web.routes.messages import router as messages_router
from sendas.web.routes.oauth import router as oauth_router
from sendas.web.routes.suppressions import router as suppressions_router

router = APIRouter(include_in_schema=False)
for module_router in (
    auth_router,
    aliases_router,
    imap_router,
    admin_router,
    messages_router,
    letters_router,
    letter_history_router,
    suppressions_router,
    oauth_router,
    account_router,
    help_router,
):
    router.include_router(module_router)
