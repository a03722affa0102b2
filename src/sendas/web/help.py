"""The help guides (/help, /help/{topic}) and where a failed Test Connection step is explained.

Each topic is a template under ``templates/help/``; a failed step's hint links to its
section (``#step-<name>``) of the "test-steps" guide.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    slug: str
    title: str
    summary: str


TOPICS: tuple[Topic, ...] = (
    Topic(
        "gmail",
        "Gmail and Google Workspace",
        "Sign in with Google, or an app password with 2-Step Verification.",
    ),
    Topic(
        "microsoft-365",
        "Microsoft 365 and Outlook.com",
        "Sign in with Microsoft, and when the administrator must allow sending.",
    ),
    Topic(
        "test-steps",
        "When Test Connection fails",
        "What each step of the test checks, and what to change when it fails.",
    ),
)
TOPICS_BY_SLUG = {t.slug: t for t in TOPICS}

# The steps the test-steps guide explains, in the order a test runs them.
STEP_SECTIONS = (
    "settings",
    "token",
    "resolve",
    "connect",
    "tls",
    "greeting",
    "ehlo",
    "starttls",
    "auth",
    "mail_from",
    "rcpt_to",
    "imap_connect",
    "imap_tls",
    "imap_login",
    "imap_find_sent",
)


def step_help_url(step: str | None, imap_only: bool = False) -> str:
    """The help link for a failed step: its section when the guide has one, else the guide.

    An IMAP account's own test names its steps without the ``imap_`` prefix.
    """
    name = (step or "").strip()
    if imap_only and name and not name.startswith("imap_"):
        name = f"imap_{name}"
    if name == "imap_append":
        name = "imap_find_sent"
    url = "/help/test-steps"
    return f"{url}#step-{name}" if name in STEP_SECTIONS else url
