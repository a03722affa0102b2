"""Authenticate /api requests before their body is read.

FastAPI reads and parses a route's body before it solves the route's dependencies, so
without this a request with no token had its JSON parsed (malformed JSON answered 422, not
401) and its whole body read. Every /api route needs a user, so the check runs for the
whole prefix, with the dependency's own function (``authenticate_early``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from sendas.api.deps import authenticate_early
from sendas.errors import AuthenticationRequired, Forbidden


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class AuthenticateFirst:
    """Pure ASGI middleware, inside the session middleware: 401/403 with the body unread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        # A Request without ``receive``: nothing here can touch the body.
        try:
            await authenticate_early(Request(scope))
        except AuthenticationRequired as exc:
            answer = JSONResponse(
                {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
            await answer(scope, receive, send)
            return
        except Forbidden as exc:
            await JSONResponse({"detail": str(exc)}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)
