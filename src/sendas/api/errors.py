"""Map the sendas exception hierarchy onto HTTP answers.

422 bodies list one entry per bad field (``loc``, ``msg`` in plain words, ``type``) and
never echo the submitted value, which could be a password.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from sendas.errors import (
    AuthenticationRequired,
    Conflict,
    FieldProblem,
    Forbidden,
    NotFound,
    RateLimited,
    SendasError,
    TooLarge,
    ValidationFailed,
)
from sendas.validation import field_problems

_DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}


def _answer(description: str, schema: dict[str, Any] = _DETAIL) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# The error answers any /api route may give, published in the OpenAPI schema (422 is
# documented by FastAPI on routes that take input). Limits that answer 413 or 429 add
# their line here.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _answer("The request cannot be carried out (the detail says why)"),
    401: _answer("No valid token (or signed-in session)"),
    403: _answer("Needs the admin role, or a cookie-session write without its CSRF token"),
    404: _answer("No such object, or it belongs to someone else"),
    409: _answer(
        "The object is in use",
        {
            "type": "object",
            "properties": {
                "detail": {"type": "string"},
                "blockers": {"type": "array", "items": {}},
            },
            "required": ["detail"],
        },
    ),
    413: _answer(
        "The request body, or an uploaded list, is over its size limit (the setting is named)",
        {
            "type": "object",
            "properties": {"detail": {}, "setting": {"type": "string"}},
            "required": ["detail"],
        },
    ),
    429: _answer(
        "A per-user limit is reached for now; Retry-After says when to try again",
        {
            "type": "object",
            "properties": {"detail": {"type": "string"}, "setting": {"type": "string"}},
            "required": ["detail"],
        },
    ),
}


def _entries(problems: list[FieldProblem]) -> list[dict[str, object]]:
    return [{"loc": list(p.loc), "msg": p.msg, "type": p.type} for p in problems]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _entries(field_problems(exc))}, status_code=422)

    @app.exception_handler(ValidationFailed)
    async def _failed(_: Request, exc: ValidationFailed) -> JSONResponse:
        return JSONResponse({"detail": _entries(exc.problems)}, status_code=422)

    @app.exception_handler(TooLarge)
    async def _too_large(_: Request, exc: TooLarge) -> JSONResponse:
        return JSONResponse({"detail": _entries(exc.problems)}, status_code=413)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": f"{exc.kind} not found"}, status_code=404)

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=403)

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "blockers": exc.blockers}, status_code=409)

    @app.exception_handler(AuthenticationRequired)
    async def _unauth(_: Request, exc: AuthenticationRequired) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc)}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(RateLimited)
    async def _rate_limited(_: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc), "setting": exc.setting},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(SendasError)
    async def _other(_: Request, exc: SendasError) -> JSONResponse:
        # Messages of our own errors are written to be safe to show (no secrets).
        return JSONResponse({"detail": str(exc)}, status_code=400)
