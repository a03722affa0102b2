"""First start: make sure the database has an admin, and say how to log in."""

from __future__ import annotations

from pydantic import SecretStr

from sendas.context import AppContext
from sendas.schemas import UserCreate
from sendas.services import users as user_service

FIRST_ADMIN_EMAIL = "admin@localhost.localdomain"


def ensure_first_admin(ctx: AppContext) -> tuple[str, str] | None:
    """Create an admin when there is none; return (email, password) once, else None."""
    with ctx.db.write() as s:
        if user_service.has_admin(s):
            return None
        password = user_service.generate_password()
        user = user_service.create_user(
            s,
            UserCreate(
                email=FIRST_ADMIN_EMAIL,
                name="Administrator",
                role="admin",
                password=SecretStr(password),
            ),
        )
        return user.email, password
