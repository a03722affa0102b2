"""AUTH payloads (RFC 4616 PLAIN, LOGIN, Google/Microsoft XOAUTH2) and the choice of
mechanism. The payloads are secrets: callers write them to the socket and nowhere else."""

from __future__ import annotations

from base64 import b64encode
from typing import Literal

Mechanism = Literal["PLAIN", "LOGIN", "XOAUTH2"]

# Preference among what the server offers: PLAIN needs one round trip, LOGIN three.
PASSWORD_MECHANISMS: tuple[Mechanism, ...] = ("PLAIN", "LOGIN")


def b64(text: str) -> bytes:
    return b64encode(text.encode("utf-8"))


def plain_payload(username: str, password: str) -> bytes:
    """``base64("\\0user\\0password")``."""
    return b64(f"\0{username}\0{password}")


def xoauth2_payload(username: str, token: str) -> bytes:
    """``base64("user=U\\x01auth=Bearer T\\x01\\x01")``."""
    return b64(f"user={username}\x01auth=Bearer {token}\x01\x01")


def choose_mechanism(offered: set[str], xoauth2: bool) -> Mechanism | None:
    """The mechanism to use, or ``None`` when the server offers none that fits."""
    if xoauth2:
        return "XOAUTH2" if "XOAUTH2" in offered else None
    for mechanism in PASSWORD_MECHANISMS:
        if mechanism in offered:
            return mechanism
    return None
