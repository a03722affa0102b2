"""Read one message from an INBOX: is it a bounce of ours, and for whom?

The failed addresses come from GNU Mailman's detectors (``flufl.bounce``: RFC 3464 and many
non-standard layouts). What they do not give is added here from the standard library's
parser: each recipient's ``Status`` and ``Diagnostic-Code`` (RFC 3464), and the Message-ID of
the message that bounced (``Original-Message-ID``, or the returned headers), which ties the
bounce to a row of ours. Automatic replies (out of office, RFC 3834 ``Auto-Submitted``) are
told apart first: they are never bounces, whatever a heuristic detector reads in them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import Header, decode_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Literal

from flufl.bounce import all_failures

log = logging.getLogger("sendas.outbox.bounces")

ReportKind = Literal["bounce", "auto-reply", "other"]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MSGID = re.compile(rb"^(?:Original-)?Message-ID:[ \t]*(<[^>\s]{1,490}>)", re.I | re.M)
_DAEMONS = ("mailer-daemon", "postmaster")
# Headers other than Auto-Submitted that auto-responders are known to set.
_AUTO_HEADERS = ("x-autoreply", "x-autorespond")


@dataclass(frozen=True)
class Failure:
    """One recipient the report says was not delivered.

    ``action``: ``failed`` (the server gave up) or ``delayed`` (still trying; a warning).
    ``status``: the enhanced status code (``5.1.1``) or ``""`` when the layout has none.
    ``permanent``: a hard bounce (status 5.x.x, or a failure a detector calls permanent).
    """

    address: str
    action: Literal["failed", "delayed"]
    status: str
    diagnostic: str
    permanent: bool

    @property
    def summary(self) -> str:
        """Status and diagnostic on one line, as stored and shown."""
        return " ".join(p for p in (self.status, self.diagnostic) if p) or "undeliverable"


@dataclass(frozen=True)
class Report:
    """What a message turned out to be; ``message_ids`` name the messages it returns."""

    kind: ReportKind
    message_ids: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()


def read_report(raw: bytes) -> Report:
    """Classify ``raw`` (a whole message, or its first bytes when it was large)."""
    msg = BytesParser(policy=compat32).parsebytes(raw)
    blocks = list(_status_blocks(msg))
    if not blocks and _is_auto_reply(msg):
        return Report("auto-reply")
    failures = _merge(_dsn_failures(blocks), _detected(msg), raw)
    if not failures:
        return Report("other")
    return Report("bounce", _returned_ids(msg, blocks, raw), tuple(failures))


def _is_auto_reply(msg: Message) -> bool:
    """RFC 3834 ``Auto-Submitted`` (anything but ``no``) or a known responder header, from
    someone who is not a mail system (Exim's plain-text bounces carry Auto-Submitted too)."""
    if msg.get("X-Failed-Recipients"):
        return False
    sender = " ".join(a for _, a in getaddresses([str(msg.get("From", ""))])).lower()
    if any(sender.startswith(d + "@") for d in _DAEMONS):
        return False
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    if auto and not auto.startswith("no"):
        return True
    return any(msg.get(h) for h in _AUTO_HEADERS) or str(
        msg.get("Precedence", "")
    ).strip().lower() in ("auto_reply", "auto-reply")


# --- RFC 3464 ---------------------------------------------------------------------------


def _status_blocks(msg: Message) -> Iterator[Message]:
    """Every field block of every ``message/delivery-status`` part (the per-message block
    first). A part the parser left as text (e.g. base64-encoded) is parsed here."""
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            yield from (b for b in payload if isinstance(b, Message))
            continue
        data = part.get_payload(decode=True)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(payload)
        for chunk in re.split(r"\r?\n\s*\r?\n", text.strip()):
            if chunk.strip():
                yield HeaderParser(policy=compat32).parsestr(chunk.strip() + "\n")


def _field(block: Message, name: str) -> str:
    value = block.get(name, "")
    if isinstance(value, Header):  # 8-bit text: an RFC 6533 report's UTF-8 address
        value = "".join(
            part.decode("utf-8", "replace") if isinstance(part, bytes) else part
            for part, _ in decode_header(value)
        )
    return " ".join(str(value).split())


def _typed_address(value: str) -> str:
    """``rfc822; a@b`` -> ``a@b`` (lower case); ``""`` for other address types."""
    kind, _, address = value.partition(";")
    if not address:
        address, kind = kind, "rfc822"
    if kind.strip().lower() != "rfc822":
        return ""
    return address.strip().strip("<>").strip().lower()


def _typed_text(value: str) -> str:
    """``smtp; 550 5.1.1 ...`` -> ``550 5.1.1 ...``."""
    kind, sep, text = value.partition(";")
    return text.strip() if sep and " " not in kind.strip() else value.strip()


def _dsn_failures(blocks: list[Message]) -> list[Failure]:
    found: list[Failure] = []
    for block in blocks:
        action = _field(block, "Action").lower()
        if action.startswith(("fail", "error")):
            kind: Literal["failed", "delayed"] = "failed"
        elif action.startswith("delayed"):
            kind = "delayed"
        else:
            continue  # delivered, relayed, expanded: not a failure
        status_match = _STATUS.search(_field(block, "Status"))
        status = status_match.group(0) if status_match else ""
        diagnostic = _typed_text(_field(block, "Diagnostic-Code"))
        permanent = kind == "failed" and (status.startswith("5") if status else True)
        for name in ("Original-Recipient", "Final-Recipient"):
            address = _typed_address(_field(block, name))
            if address:
                found.append(Failure(address, kind, status, diagnostic[:1000], permanent))
    return found


# --- flufl.bounce (every other layout) ---------------------------------------------------


def _detected(msg: Message) -> tuple[set[str], set[str]]:
    """flufl.bounce's (temporary, permanent) addresses, lower case; empty when a detector
    fails on a malformed message (logged, never fatal)."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:
        log.warning("a bounce detector failed on a message; treating it as no bounce")
        return set(), set()

    def text(addresses: frozenset[bytes]) -> set[str]:
        return {a.decode("ascii", "replace").strip().lower() for a in addresses if b"@" in a}

    return text(temporary), text(permanent)


def _merge(dsn: list[Failure], detected: tuple[set[str], set[str]], raw: bytes) -> list[Failure]:
    """The DSN's recipients, plus what the detectors found that the DSN did not name (with a
    status code and line of text found near the address, when there is one)."""
    by_address: dict[str, Failure] = {}
    for failure in dsn:
        by_address.setdefault(failure.address, failure)
    known = {f.address for f in dsn}
    temporary, permanent = detected
    text = raw[:200_000].decode("utf-8", "replace")
    for address in sorted((permanent | temporary) - known):
        status, line = _near(text, address)
        is_failed = address in permanent
        hard = is_failed and not status.startswith("4")
        action: Literal["failed", "delayed"] = "failed" if is_failed else "delayed"
        by_address[address] = Failure(address, action, status, line, hard)
    return list(by_address.values())


def _near(text: str, address: str) -> tuple[str, str]:
    """An enhanced status code on the line naming ``address`` or the three after it."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if address in line.lower():
            for candidate in lines[i : i + 4]:
                match = _STATUS.search(candidate)
                if match:
                    return match.group(0), " ".join(candidate.split())[:1000]
            return "", " ".join(line.split())[:1000]
    return "", ""


# --- which message of ours ---------------------------------------------------------------


def _returned_ids(msg: Message, blocks: list[Message], raw: bytes) -> tuple[str, ...]:
    """Message-IDs the report returns: ``Original-Message-ID`` (top level or in the DSN), the
    returned headers (``text/rfc822-headers``, ``message/rfc822``), else any quoted
    ``Message-ID:`` line in the body. The bounce's own Message-ID is never one of them."""
    own = _clean_id(str(msg.get("Message-ID", "")))
    found: list[str] = []
    for source in [msg, *blocks]:
        found.append(_clean_id(str(source.get("Original-Message-ID", ""))))
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and isinstance(part.get_payload(), list):
            for inner in part.get_payload():
                if isinstance(inner, Message):
                    found.append(_clean_id(str(inner.get("Message-ID", ""))))
        elif ctype == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else ""
            headers = HeaderParser(policy=compat32).parsestr(text, headersonly=True)
            found.append(_clean_id(str(headers.get("Message-ID", ""))))
    if not any(found):
        body = raw.split(b"\n\n", 1)[-1] if b"\n\n" in raw else raw.split(b"\r\n\r\n", 1)[-1]
        found.extend(_clean_id(m.decode("ascii", "replace")) for m in _MSGID.findall(body))
    return tuple(dict.fromkeys(i for i in found if i and i != own))


def _clean_id(value: str) -> str:
    """``<id@host>`` as stored in ``messages.message_id``; ``""`` when there is none."""
    match = re.search(r"<[^<>\s]+>", value)
    return match.group(0) if match else ""
