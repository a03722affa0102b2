"""Web session key, CSRF tokens and the login throttle."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import FormData
from starlette.requests import HTTPConnection

from sendas.config import Settings
from sendas.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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


def trusted_networks(spec: str) -> tuple[IPNetwork, ...]:
    """Parse ``SENDAS_TRUSTED_PROXIES`` (comma-separated CIDRs or addresses); raises
    ConfigError naming the setting on a bad entry."""
    networks = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"SENDAS_TRUSTED_PROXIES: {item!r} is not an IP address or CIDR"
            ) from None
    return tuple(networks)


def _in(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks)


def client_address(request: HTTPConnection, trusted: tuple[IPNetwork, ...]) -> str:
    """The client's address: the direct peer, unless the peer is a trusted proxy; then the
    nearest ``X-Forwarded-For`` entry (from the right) that is not itself a trusted proxy.

    An untrusted peer's header is ignored, so rotating it changes nothing."""
    peer = request.client.host if request.client else "?"
    if not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _in(hop, trusted):
            return hop
    return peer


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0


class LoginThrottle:
    """Slow down password guessing without locking the real user out.

    Per (client, account) pair: after ``free`` failures each further attempt waits
    ``base * 2**(n - free)`` seconds (at most ``max_delay``), so an attacker elsewhere
    gains nothing against the user's own client. Per client: more than ``per_client``
    failures within ``window`` seconds pause that client for the rest of the window.
    A success clears the pair. Entries are forgotten after ``window`` seconds without
    failures, and at most ``max_entries`` are kept (the oldest go first), so memory stays
    bounded. State is per process.
    """

    def __init__(
        self,
        *,
        free: int = 5,
        base: float = 2.0,
        max_delay: float = 900.0,
        per_client: int = 30,
        window: float = 900.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = free
        self.base = base
        self.max_delay = max_delay
        self.per_client = per_client
        self.window = window
        self.max_entries = max_entries
        self.clock = clock
        self._pairs: OrderedDict[tuple[str, str], _Failures] = OrderedDict()
        self._clients: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _pair_wait(self, key: tuple[str, str], now: float) -> float:
        entry = self._pairs.get(key)
        if entry is None or now - entry.last >= self.window:
            self._pairs.pop(key, None)
            return 0.0
        if entry.count < self.free:
            return 0.0
        delay: float = min(self.base * 2.0 ** (entry.count - self.free), self.max_delay)
        return max(0.0, entry.last + delay - now)

    def _client_wait(self, client: str, now: float) -> float:
        q = self._clients.get(client)
        if q is None:
            return 0.0
        while q and q[0] <= now - self.window:
            q.popleft()
        if len(q) < self.per_client:
            return 0.0
        return q[0] + self.window - now

    def retry_after(self, client: str, email: str) -> int:
        """Whole seconds until this client may try this account again; 0: now."""
        now = self.clock()
        key = (client, email.strip().casefold())
        with self._lock:
            wait = max(self._pair_wait(key, now), self._client_wait(client, now))
        return math.ceil(wait)

    def failed(self, client: str, email: str) -> None:
        now = self.clock()
        key = (client, email.strip().casefold())
        with self._lock:
            entry = self._pairs.pop(key, None) or _Failures()
            entry.count += 1
            entry.last = now
            self._pairs[key] = entry  # most recent last: eviction takes the oldest
            q = self._clients.pop(client, None) or deque()
            q.append(now)
            while len(q) > self.per_client:
                q.popleft()
            self._clients[client] = q
            for table in (self._pairs, self._clients):
                while len(table) > self.max_entries:
                    table.popitem(last=False)

    def succeeded(self, client: str, email: str) -> None:
        with self._lock:
            self._pairs.pop((client, email.strip().casefold()), None)


def password_guard(request: HTTPConnection) -> tuple[LoginThrottle, str]:
    """The app's log-in throttle and this request's client address: every check of a typed
    password (log in, change own password) counts against the same pair."""
    throttle: LoginThrottle = request.app.state.login_throttle
    return throttle, client_address(request, request.app.state.trusted_proxies)
