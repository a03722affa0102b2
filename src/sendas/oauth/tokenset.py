"""The token set of one signed-in alias, stored encrypted in ``Alias.oauth_token_enc``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import SecretStr

from sendas.db.models import Alias
from sendas.secrets import SecretBox


@dataclass(frozen=True)
class TokenSet:
    """Access and refresh token plus who they belong to. The repr shows no token."""

    provider: str
    email: str
    subject: str
    access_token: SecretStr = field(repr=False)
    refresh_token: SecretStr | None = field(repr=False)
    expires_at: float  # epoch seconds
    scope: str = ""
    tenant_id: str | None = None

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        return self.expires_at - seconds <= (time.time() if now is None else now)

    def with_refresh(self, token: dict[str, Any], *, now: float | None = None) -> TokenSet:
        """This set after a refresh answer; a rotated refresh token replaces the old one
        (providers that do not rotate keep the old one)."""
        new_refresh = token.get("refresh_token")
        return replace(
            self,
            access_token=SecretStr(str(token["access_token"])),
            refresh_token=SecretStr(str(new_refresh)) if new_refresh else self.refresh_token,
            expires_at=expires_at(token, now=now),
            scope=str(token.get("scope") or self.scope),
        )

    def encrypt(self, box: SecretBox) -> str:
        doc = {
            "v": 1,
            "provider": self.provider,
            "email": self.email,
            "subject": self.subject,
            "access_token": self.access_token.get_secret_value(),
            "refresh_token": self.refresh_token.get_secret_value() if self.refresh_token else None,
            "expires_at": self.expires_at,
            "scope": self.scope,
            "tenant_id": self.tenant_id,
        }
        return box.encrypt(json.dumps(doc, separators=(",", ":")))

    @classmethod
    def decrypt(cls, box: SecretBox, stored: str) -> TokenSet:
        doc = json.loads(box.decrypt(stored).get_secret_value())
        refresh = doc.get("refresh_token")
        return cls(
            provider=doc["provider"],
            email=doc["email"],
            subject=doc.get("subject", ""),
            access_token=SecretStr(doc["access_token"]),
            refresh_token=SecretStr(refresh) if refresh else None,
            expires_at=float(doc["expires_at"]),
            scope=doc.get("scope", ""),
            tenant_id=doc.get("tenant_id"),
        )


def expires_at(token: dict[str, Any], *, now: float | None = None) -> float:
    """Absolute expiry of a token endpoint answer (``expires_at``, else now + ``expires_in``,
    else one hour, the providers' usual lifetime)."""
    if token.get("expires_at"):
        return float(token["expires_at"])
    lifetime = float(token.get("expires_in") or 3600)
    return (time.time() if now is None else now) + lifetime


def load_tokens(alias: Alias, box: SecretBox) -> TokenSet | None:
    """The alias's stored token set, or ``None`` when it has not signed in."""
    return TokenSet.decrypt(box, alias.oauth_token_enc) if alias.oauth_token_enc else None


def store_tokens(alias: Alias, tokens: TokenSet, box: SecretBox) -> None:
    """Store the token set (encrypted) and clear ``needs_reauth``: a fresh grant."""
    alias.oauth_token_enc = tokens.encrypt(box)
    alias.needs_reauth = False
