"""The browser's session cookie tied to a server-side row (services.sessions).

The signed cookie carries ``sid`` (a random id) and the CSRF token; the user is whoever the
live row names. Log out deletes the row, so a copy of the cookie is worth nothing after.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from sendas.context import AppContext
from sendas.db.models import User
from sendas.services import sessions
from sendas.web.security import new_csrf_token

SESSION_ID = "sid"


def cookie_session_id(request: HTTPConnection) -> object:
    """The session id in the cookie, or None (also when no session middleware runs)."""
    if "session" not in request.scope:
        return None
    return request.session.get(SESSION_ID)


def signed_in_user(request: HTTPConnection, ctx: AppContext) -> User:
    """The user of the cookie's live session; raises AuthenticationRequired otherwise.

    ``last_seen_at`` is written at most once a minute, in its own short transaction."""
    session_id = cookie_session_id(request)
    with ctx.db.read() as s:
        found = sessions.lookup(s, session_id)
    if found.seen_due:
        with ctx.db.write() as s:
            sessions.touch(s, found.row_id)
    return found.user


def begin(request: HTTPConnection, ctx: AppContext, user_id: int) -> None:
    """A fresh session at log-in (a new id and CSRF token: no fixation)."""
    with ctx.db.write() as s:
        session_id = sessions.start(s, user_id, keep=ctx.settings.sessions_per_user)
    request.session.clear()
    request.session[SESSION_ID] = session_id
    request.session["csrf"] = new_csrf_token()


def finish(request: HTTPConnection, ctx: AppContext) -> None:
    """Log out: the row goes, then the cookie is emptied."""
    session_id = cookie_session_id(request)
    if session_id is not None:
        with ctx.db.write() as s:
            sessions.end(s, session_id)
    request.session.clear()


def forget(request: HTTPConnection) -> None:
    """The cookie names no live session: drop it (keeps nothing that looks signed in)."""
    if "session" in request.scope and SESSION_ID in request.session:
        request.session.clear()
