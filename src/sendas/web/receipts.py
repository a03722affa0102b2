"""Receipts for a passing Test Connection of unsaved alias settings.

A test run before Save answers with a receipt (a hidden field of the form): the result,
signed by the server and tied to the user, the alias (or none yet) and a keyed fingerprint
of the connection settings tested. Save records the result as the alias's ``last_test`` only
when the receipt's signature holds, it is fresh, and the settings saved are the ones tested.
The client never supplies a result the server did not sign.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from sendas.config import Settings
from sendas.schemas import ConnectionTestResult
from sendas.web.security import session_key

FIELD = "test_receipt"
# Long enough to finish the form after testing; short enough that a stale server is retested.
LIFETIME_S = 30 * 60
# What decides whether a connection test passes; the rest (names, delay) plays no part.
CONNECTION_FIELDS = (
    "from_address",
    "smtp_server",
    "smtp_username",
    "smtp_password",
    "tls",
    "allow_plaintext_auth",
    "ca_bundle",
    "imap_account_id",
    "auth",
)


def _key(settings: Settings) -> bytes:
    return hmac.new(
        session_key(settings).encode(), b"sendas test receipt v1", hashlib.sha256
    ).digest()


def fingerprint(settings: Settings, data: dict[str, Any]) -> str:
    """A keyed digest of the connection settings in ``data`` (form input, secrets included:
    keyed, so the receipt does not offer a password hash to guess against)."""
    picked = {name: _plain(data.get(name)) for name in CONNECTION_FIELDS}
    canonical = json.dumps(picked, sort_keys=True, separators=(",", ":"))
    return hmac.new(_key(settings), canonical.encode(), hashlib.sha256).hexdigest()


def _plain(value: Any) -> Any:
    getter = getattr(value, "get_secret_value", None)
    return getter() if callable(getter) else value


def issue(
    settings: Settings,
    user_id: int,
    alias_id: int | None,
    data: dict[str, Any],
    result: ConnectionTestResult,
    *,
    now: float | None = None,
) -> str | None:
    """A receipt for a passing test, or None for a failed one (nothing to carry over)."""
    if not result.ok:
        return None
    payload = {
        "u": user_id,
        "a": alias_id,
        "f": fingerprint(settings, data),
        "exp": int((time.time() if now is None else now) + LIFETIME_S),
        "r": result.model_dump(mode="json"),
    }
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
    return f"{body}.{_sign(settings, body)}"


def _sign(settings: Settings, body: str) -> str:
    return hmac.new(_key(settings), body.encode(), hashlib.sha256).hexdigest()


def redeem(
    settings: Settings,
    receipt: str,
    user_id: int,
    alias_id: int | None,
    data: dict[str, Any],
    *,
    now: float | None = None,
) -> dict[str, Any] | None:
    """The signed result to store as ``last_test``, or None when the receipt is missing,
    forged, stale, someone else's, another alias's, or for other settings than ``data``."""
    body, _, signature = receipt.strip().partition(".")
    if not body or not hmac.compare_digest(_sign(settings, body).encode(), signature.encode()):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body.encode()))
    except ValueError:
        return None
    fresh = payload.get("exp", 0) >= (time.time() if now is None else now)
    same = (
        payload.get("u") == user_id
        and payload.get("a") == alias_id
        and hmac.compare_digest(str(payload.get("f", "")), fingerprint(settings, data))
    )
    result = payload.get("r")
    if not (fresh and same and isinstance(result, dict) and result.get("status") == "OK"):
        return None
    return result
