"""Which providers file their own copy of a sent message (see PROVIDERS.md)."""

from __future__ import annotations

import re

# Hosts whose SMTP service files the sent message in the account's Sent folder by itself:
# an IMAP APPEND there would leave two copies.
_SELF_FILING_HOSTS = re.compile(
    r"""^(?:
        smtp\.gmail\.com | smtp\.googlemail\.com          # Gmail, Google Workspace
      | smtp\.office365\.com | smtp-mail\.outlook\.com    # Microsoft 365, Outlook.com
      | smtp\.mail\.me\.com                               # iCloud
      | smtp(?:pro)?\.zoho\.[a-z]{2,3}(?:\.[a-z]{2})?     # Zoho, all regions
    )$""",
    re.VERBOSE,
)


def _host_only(smtp_host: str) -> str:
    """``host``, ``host:port``, ``[v6]:port`` -> lower-case host without a trailing dot."""
    host = smtp_host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def files_own_sent_copy(smtp_host: str) -> bool:
    """True when the provider files its own copy in Sent, so the APPEND must be skipped.

    That holds for Gmail / Google Workspace, Microsoft 365 / Outlook.com, iCloud and Zoho
    (by SMTP host, ``host:port`` accepted). Decided by host only: an alias signed in with
    Google or Microsoft that sends through another server (a relay the owner chose) gets a
    copy made through IMAP, with its access token (XOAUTH2).
    """
    return bool(_SELF_FILING_HOSTS.match(_host_only(smtp_host)))
