"""Provider presets for the Edit Alias screen (facts from PROVIDERS.md).

A preset fills the server, the TLS mode and a suggested delay; its note tells the user
what to type as user name and password for that provider.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    smtp_server: str
    tls: str
    delay_ms: int
    note: str
    oauth: str | None = None  # "google" | "microsoft" when sign-in is the better choice

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: tuple[Preset, ...] = (
    Preset(
        "gmail",
        "Gmail",
        "smtp.gmail.com:465",
        "implicit",
        2000,
        "Use Sign in with Google, or an app password (it needs 2-Step Verification; type it "
        "without the spaces Google shows). User name: your full address. About 500 "
        "messages a day.",
        "google",
    ),
    Preset(
        "google_workspace",
        "Google Workspace",
        "smtp.gmail.com:465",
        "implicit",
        2000,
        "Use Sign in with Google: Workspace stopped accepting plain passwords in September "
        "2024. 2,000 messages a day (500 during a trial).",
        "google",
    ),
    Preset(
        "microsoft_365",
        "Microsoft 365",
        "smtp.office365.com:587",
        "starttls",
        2000,
        "Use Sign in with Microsoft, or an app password. An administrator must turn on "
        "Authenticated SMTP for the mailbox. Limit: 30 messages a minute.",
        "microsoft",
    ),
    Preset(
        "outlook_com",
        "Outlook.com",
        "smtp-mail.outlook.com:587",
        "starttls",
        3000,
        "Outlook.com accepts only Sign in with Microsoft (passwords stopped working in "
        "September 2024). Free accounts send about 300 messages a day.",
        "microsoft",
    ),
    Preset(
        "yahoo",
        "Yahoo",
        "smtp.mail.yahoo.com:465",
        "implicit",
        2000,
        "Create an app password in your Yahoo account security settings. User name: your "
        "full address. 500 messages a day.",
    ),
    Preset(
        "icloud",
        "iCloud",
        "smtp.mail.me.com:587",
        "starttls",
        2000,
        "Create an app-specific password at appleid.apple.com. User name: your full iCloud "
        "address. 1,000 messages a day.",
    ),
    Preset(
        "zoho",
        "Zoho",
        "smtppro.zoho.com:465",
        "implicit",
        7200,
        "Paid plans use smtppro.zoho.com, free ones smtp.zoho.com; use the .eu, .in or "
        ".com.au host of your region. Needs an app password (with 2FA). Zoho counts per "
        "hour: 7,200 ms keeps you under 500 an hour.",
    ),
    Preset(
        "fastmail",
        "Fastmail",
        "smtp.fastmail.com:465",
        "implicit",
        1000,
        "Create an app password under Settings > Privacy & Security. User name: your "
        "Fastmail address.",
    ),
    Preset(
        "amazon_ses",
        "Amazon SES",
        "email-smtp.us-east-1.amazonaws.com:587",
        "starttls",
        1000,
        "Replace us-east-1 with your region. Use the SMTP credentials SES generates (not "
        "your IAM access keys). The sandbox allows 1 message a second.",
    ),
    Preset(
        "sendgrid",
        "SendGrid",
        "smtp.sendgrid.net:587",
        "starttls",
        0,
        "The user name is the word apikey; the password is your SendGrid API key.",
    ),
    Preset(
        "mailgun",
        "Mailgun",
        "smtp.mailgun.org:587",
        "starttls",
        0,
        "Use the SMTP credentials of your sending domain (EU accounts: smtp.eu.mailgun.org).",
    ),
)

PRESETS_BY_KEY = {p.key: p for p in PRESETS}

# One display name per encryption mode, for every page that shows a saved mode (cards,
# summaries). The choices of a form may add a hint after the name.
TLS_LABELS: dict[str, str] = {
    "auto": "Automatic",
    "implicit": "TLS from the start",
    "starttls": "STARTTLS",
    "none": "None (unencrypted)",
}
