"""ORM models, one module per area. Secret columns end in ``_enc`` and hold Fernet tokens,
never plaintext. Everything is imported here, so that ``sendas.db.models`` stays the one
place to import from and every table is in ``Base.metadata``."""

from sendas.db.models.accounts import ApiToken, User, WebSession
from sendas.db.models.aliases import Alias, ImapAccount, SmtpColumns, SystemOutgoing
from sendas.db.models.base import NAMING, Base, UtcDateTime, utcnow
from sendas.db.models.bounces import BounceMailbox, Suppression
from sendas.db.models.events import AuditEvent, RateEvent
from sendas.db.models.oauth import OAuthClient, PendingSignIn
from sendas.db.models.outbox import (
    Campaign,
    CampaignCount,
    Lane,
    LiveWorker,
    Message,
    MessageBody,
)

__all__ = [
    "NAMING",
    "Alias",
    "ApiToken",
    "AuditEvent",
    "Base",
    "BounceMailbox",
    "Campaign",
    "CampaignCount",
    "ImapAccount",
    "Lane",
    "LiveWorker",
    "Message",
    "MessageBody",
    "OAuthClient",
    "PendingSignIn",
    "RateEvent",
    "SmtpColumns",
    "Suppression",
    "SystemOutgoing",
    "User",
    "UtcDateTime",
    "WebSession",
    "utcnow",
]
