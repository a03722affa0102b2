"""Web session key, CSRF tokens and the login throttle."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque

from starlette.datastructures import FormData
from starlette.requests import HTTPConnection

from sendas.config import Settings

CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


def session_key(settings: Settings) -> str:
    """The key signing session cookies.

    ``SENDAS_SESSION_SECRET`` when set; otherwise derived (HMAC, with its own label) from the
    newest secret key, so every process sharing the key accepts the same cookies. Rotating
    the secret key then signs everyone out, which is what a rotation after a leak wants.
    """
    if settings.session_secret is not None and settings.session_secret.get_secret_value():
        return settings.session_secret.get_secret_value()
    if settings.secret_key is not None and settings.secret_key.get_secret_value().strip():
        material = settings.secret_key.get_secret_value()
    else:
        # AppContext.build() created the key file before the app is assembled.
        material = settings.key_file.read_text()
    newest = next(k.strip() for k in material.replace(",", "\n").splitlines() if k.strip())
    return hmac.new(newest.encode(), b"sendas web session v1", hashlib.sha256).hexdigest()


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    # Bytes: compare_digest refuses non-ASCII str, and a header may carry anything.
    return hmac.compare_digest(expected.encode(), given.encode())


def csrf_ok(request: HTTPConnection, form: FormData | None = None) -> bool:
    """True when a write carries the session's CSRF token: in the ``X-CSRF-Token`` header
    (htmx, scripts using the session cookie) or in a posted form's ``csrf`` field.

    The one check for the pages and for the API's cookie sessions.
    """
    given: object = request.headers.get(CSRF_HEADER)
    if not given and form is not None:
        given = form.get(CSRF_FIELD)
    expected = request.session.get("csrf")
    return csrf_matches(
        expected if isinstance(expected, str) else None, given if isinstance(given, str) else None
    )


class LoginThrottle:
    """Refuse log-in attempts after ``limit`` failures per (IP, email) within ``window`` s.

    A second, looser limit per IP alone stops one client from trying many emails. State is
    per process: enough to make guessing slow, nothing to configure.
    """

    def __init__(self, limit: int = 5, window: float = 60.0, per_ip_limit: int = 30) -> None:
        self.limit = limit
        self.window = window
        self.per_ip_limit = per_ip_limit
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._per_ip: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, q: deque[float], now: float) -> None:
        while q and q[0] <= now - self.window:
            q.popleft()

    def retry_after(self, ip: str, email: str) -> int:
        """Seconds until another attempt is allowed; 0 when one is allowed now."""
        now = time.monotonic()
        key = (ip, email.strip().casefold())
        with self._lock:
            waits = []
            for q, limit in (
                (self._failures.get(key), self.limit),
                (self._per_ip.get(ip), self.per_ip_limit),
            ):
                if q is None:
                    continue
                self._trim(q, now)
                if len(q) >= limit:
                    waits.append(int(q[0] + self.window - now) + 1)
            return max(waits, default=0)

    def failed(self, ip: str, email: str) -> None:
        now = time.monotonic()
        key = (ip, email.strip().casefold())
        with self._lock:
            self._failures.setdefault(key, deque()).append(now)
            self._per_ip.setdefault(ip, deque()).append(now)

    def succeeded(self, ip: str, email: str) -> None:
        with self._lock:
            self._failures.pop((ip, email.strip().casefold()), None)
