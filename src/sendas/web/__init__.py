"""The web UI: server-rendered pages (Jinja2 + htmx) over the same services as the API.

``install_web(app)`` adds the session middleware, the static files and the page routes to
an app built by :func:`sendas.api.create_app`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sendas.context import AppContext
from sendas.web.deps import CsrfRefused, LoginRequired, PageNotFound, SetupRequired
from sendas.web.render import is_htmx, page
from sendas.web.routes import router
from sendas.web.security import LoginThrottle, session_key, trusted_networks


def _is_api(path: str) -> bool:
    """The API's paths (the same test as the API's own middlewares): JSON, not pages."""
    return path == "/api" or path.startswith("/api/")


SESSION_COOKIE = "sendas_session"
SESSION_MAX_AGE = 14 * 24 * 3600

# No inline script or style anywhere in the templates, so the policy can forbid both.
_PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class PageHeaders:
    """Security headers on every response outside /api."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _is_api(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                # A response with a policy of its own (a message's HTML, shown framed and
                # sandboxed) keeps it; every other response gets the pages' policy.
                own = any(k.lower() == b"content-security-policy" for k, _ in message["headers"])
                extra = _PAGE_HEADERS[2:] if own else _PAGE_HEADERS
                message["headers"] = [*message["headers"], *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install_web(app: FastAPI) -> None:
    ctx: AppContext = app.state.ctx
    settings = ctx.settings
    app.state.login_throttle = LoginThrottle()
    app.state.trusted_proxies = trusted_networks(settings.trusted_proxies)
    app.add_middleware(PageHeaders)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_key(settings),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE,
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        target = "/login"
        if request.method == "GET" and request.url.path not in ("/", "/login"):
            target += "?next=" + request.url.path
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(SetupRequired)
    async def _setup(request: Request, _: SetupRequired) -> Response:
        if is_htmx(request):
            return Response(status_code=401, headers={"HX-Redirect": "/setup"})
        return RedirectResponse("/setup", status_code=303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"detail": "missing or wrong CSRF token"}, status_code=403)
        return page(
            request,
            "error.html",
            {
                "title": "Refused",
                "message": "This form was not sent from a page of this site (its security token "
                "is missing or old). Go back, reload the page and try again.",
            },
            status_code=403,
        )

    @app.exception_handler(PageNotFound)
    async def _not_found(request: Request, _: PageNotFound) -> HTMLResponse:
        return page(
            request,
            "error.html",
            {
                "title": "Not found",
                "message": "There is nothing here, or it belongs to someone else.",
            },
            status_code=404,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A browser asking for a page that does not exist gets a page; the API keeps JSON.
        if exc.status_code == 404 and _wants_page(request):
            return await _not_found(request, PageNotFound())
        return await http_exception_handler(request, exc)


def _wants_page(request: Request) -> bool:
    path = request.url.path
    if path == "/api" or path.startswith("/api/"):
        return False
    return "text/html" in request.headers.get("accept", "")
