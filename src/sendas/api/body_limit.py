"""A cap on request bodies, checked before anything parses them.

A ``Content-Length`` over the cap is answered 413 at once, without reading a byte; a body
sent in chunks is counted as the app reads it, and reading stops at the first chunk past
the cap. The upload routes (a message with attachments, a form letter with its CSV, their
previews) get a larger cap, the log-in and first-run forms a small one.
"""

from __future__ import annotations

import html

from fastapi import FastAPI, Request
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sendas.config import Settings
from sendas.units import byte_size

UPLOAD_PATHS = frozenset(
    {
        "/api/messages",
        "/api/system/messages",
        "/api/campaigns",
        "/api/campaigns/preview",
        "/compose",
        "/campaigns",
        "/campaigns/preview",
    }
)
LOGIN_PATHS = frozenset({"/login", "/setup"})


class BodyTooLarge(HTTPException):
    """A request body over its cap; ``setting`` names the variable that sets it."""

    def __init__(self, limit: int, setting: str) -> None:
        self.limit = limit
        self.setting = setting
        detail = f"the request is larger than {byte_size(limit)} ({setting}); nothing was done"
        super().__init__(413, detail=detail)


def too_large_response(path: str, exc: BodyTooLarge) -> Response:
    """JSON under /api; for pages a fragment that htmx shows where the form's status goes."""
    if path == "/api" or path.startswith("/api/"):
        return JSONResponse({"detail": exc.detail, "setting": exc.setting}, status_code=413)
    return HTMLResponse(
        '<p class="flash flash-error" role="alert">Not sent: '
        f"{html.escape(exc.detail)}. Attach less, or split the list.</p>",
        status_code=413,
    )


class BodyLimit:
    """Pure ASGI middleware: 413 past the cap of the request's route."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.default = (settings.max_request_bytes, "SENDAS_MAX_REQUEST_BYTES")
        self.upload = (settings.max_upload_request_bytes, "SENDAS_MAX_UPLOAD_REQUEST_BYTES")
        self.login = (settings.max_login_request_bytes, "SENDAS_MAX_LOGIN_REQUEST_BYTES")

    def cap(self, path: str) -> tuple[int, str]:
        if path in UPLOAD_PATHS:
            return self.upload
        if path in LOGIN_PATHS:
            return self.login
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit, setting = self.cap(path)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await too_large_response(path, BodyTooLarge(limit, setting))(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised into whatever reads the body; the handler below answers 413.
                    raise BodyTooLarge(limit, setting)
            return message

        await self.app(scope, counted, send)


def install_body_limit(app: FastAPI, settings: Settings) -> None:
    """Add the middleware and the answer for a body found too large while it is read."""
    app.add_middleware(BodyLimit, settings=settings)

    async def _too_large(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BodyTooLarge)
        return too_large_response(request.url.path, exc)

    app.add_exception_handler(BodyTooLarge, _too_large)
