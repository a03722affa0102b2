"""Alias + content -> the exact bytes to submit, the envelope, and the Message-ID.

The bytes come from :mod:`sendas.mime_fast` (direct writing of the shapes we build: RFC 2047
encoding of non-ASCII names and subjects, quoting of specials, header folding), with the
stdlib ``email`` package as the fallback and the reference. Our part here is to refuse what
must never reach a header (line breaks and other control characters), to pick the address
form the server can take (IDNA ``xn--`` domains without SMTPUTF8, Unicode with it), and to
keep Bcc out of the headers while putting it in the envelope.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.headerregistry import Address, Group
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from functools import lru_cache

import idna

from sendas import mime_fast
from sendas.errors import SmtpUtf8Required, ValidationFailed
from sendas.header_text import header_text_problem

# Write the common shapes directly (sendas.mime_fast, ~20x faster than the email package);
# the email package stays the fallback and the reference the tests compare against.
FAST_PATH = True

# RFC 5321: 64 octets of local part, 255 of domain; a path is at most 256 including <>.
MAX_ADDRESS = 254

# Bodies always go out 7-bit clean (quoted-printable or base64), so no 8BITMIME is needed.
_ASCII_POLICY = email_policy.SMTP.clone(cte_type="7bit")
_UTF8_POLICY = email_policy.SMTPUTF8.clone(cte_type="7bit")

# RFC 5322 atext, for dot-atom local parts; any non-ASCII character is allowed too (RFC 6531).
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ATEXT = frozenset(_ALNUM + "!#$%&'*+-/=?^_`{|}~")
# RFC 2045 token characters, for content types.
_TOKEN = frozenset(_ALNUM + "!#$%&'*+-.^_`|~")


@dataclass(frozen=True)
class Sender:
    """Who the message is from: an alias, or the database's outgoing settings."""

    alias_name: str
    from_address: str
    reply_to: str | None = None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Content:
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    subject: str = ""
    text: str = ""
    html: str | None = None
    attachments: Sequence[Attachment] = ()


@dataclass(frozen=True)
class Composed:
    """What the transport submits, and what the copy to Sent appends, byte for byte.

    ``smtputf8`` is true when the message can only be submitted with the SMTPUTF8 extension
    (a non-ASCII address is kept in Unicode); ``data`` then carries UTF-8 headers.
    """

    data: bytes = field(repr=False)
    envelope_from: str
    recipients: list[str]
    message_id: str
    smtputf8: bool


def needs_smtputf8(addresses: Iterable[str]) -> bool:
    """True when an address cannot be sent without SMTPUTF8: a non-ASCII local part.

    A non-ASCII domain alone does not need it: it goes out in its IDNA (``xn--``) form.
    """
    return any(not addr.rpartition("@")[0].isascii() for addr in addresses)


def compose(
    sender: Sender, content: Content, *, utf8: bool, date: datetime | None = None
) -> Composed:
    """Build the message. ``utf8`` says whether the server offers SMTPUTF8.

    The alias name, subject and filenames lose leading and trailing whitespace.

    Raises :class:`ValidationFailed` naming the field for a bad address or a header-bound
    value with a line break or control character, and :class:`SmtpUtf8Required` when
    ``utf8`` is false and an address has a non-ASCII local part.
    """
    from_address = _address("from_address", sender.from_address, utf8=utf8)
    reply_to = (
        _address("reply_to", sender.reply_to, utf8=utf8) if sender.reply_to is not None else None
    )
    to = [_address("to", a, utf8=utf8) for a in content.to]
    cc = [_address("cc", a, utf8=utf8) for a in content.cc]
    bcc = [_address("bcc", a, utf8=utf8) for a in content.bcc]
    if not (to or cc or bcc):
        raise ValidationFailed.one("to", "at least one recipient is required")
    # Outer whitespace does not survive header parsing anyway; drop it here, visibly.
    alias_name = _header_text("alias_name", sender.alias_name).strip()
    subject = _header_text("subject", content.subject).strip()
    attachments = [_attachment(i, a) for i, a in enumerate(content.attachments)]

    all_addresses = [from_address, *([reply_to] if reply_to else []), *to, *cc, *bcc]
    smtputf8 = not all(a.isascii() for a in all_addresses)
    date_value = format_datetime(date) if date is not None else _date_now()
    message_id = make_msgid(domain=_idna(from_address.rpartition("@")[2]))

    data = None
    if FAST_PATH:
        data = mime_fast.build(
            from_address=from_address,
            alias_name=alias_name,
            reply_to=reply_to,
            to=to,
            cc=cc,
            subject=subject,
            date=date_value,
            message_id=message_id,
            text=content.text,
            html=content.html,
            attachments=[(a.filename, a.content_type, a.data) for a in attachments],
        )
    if data is None:
        data = _build_stdlib(
            from_address=from_address,
            alias_name=alias_name,
            reply_to=reply_to,
            to=to,
            cc=cc,
            subject=subject,
            date=date_value,
            message_id=message_id,
            content=content,
            attachments=attachments,
            smtputf8=smtputf8,
        )

    return Composed(
        data=data,
        envelope_from=from_address,
        recipients=_unique([*to, *cc, *bcc]),
        message_id=message_id,
        smtputf8=smtputf8,
    )


_last_date: tuple[int, str] = (0, "")


def _date_now() -> str:
    """The Date header value for now. It has whole seconds, so it is formatted once per
    second, not once per message (``format_datetime`` costs as much as a header block)."""
    global _last_date
    second = int(time.time())
    if _last_date[0] != second:
        stamp = datetime.fromtimestamp(second, UTC)
        _last_date = (second, format_datetime(stamp))
    return _last_date[1]


def _build_stdlib(
    *,
    from_address: str,
    alias_name: str,
    reply_to: str | None,
    to: list[str],
    cc: list[str],
    subject: str,
    date: str,
    message_id: str,
    content: Content,
    attachments: list[Attachment],
    smtputf8: bool,
) -> bytes:
    """The message through the ``email`` package: the reference for :mod:`sendas.mime_fast`."""
    msg = EmailMessage(policy=_UTF8_POLICY if smtputf8 else _ASCII_POLICY)

    msg["From"] = _header_address(from_address, alias_name)
    if reply_to:
        msg["Reply-To"] = _header_address(reply_to)
    if to:
        msg["To"] = [_header_address(a) for a in to]
    elif not cc:
        msg["To"] = Group("undisclosed-recipients")  # Bcc only: say so, name no one
    if cc:
        msg["Cc"] = [_header_address(a) for a in cc]
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id

    msg.set_content(content.text)
    if content.html is not None:
        msg.add_alternative(content.html, subtype="html")
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        msg.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename
        )

    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # the email package repeats it in parts; once is enough

    return msg.as_bytes()


def _header_address(address: str, display_name: str = "") -> Address:
    # username/domain rather than addr_spec: addr_spec refuses RFC 6531 (UTF-8) local parts.
    local, _, domain = address.rpartition("@")
    return Address(display_name=display_name, username=local, domain=domain)


def _header_text(field_name: str, value: str) -> str:
    """A value bound for a header: no control characters or line separators, not too long."""
    problem = header_text_problem(value)
    if problem is not None:
        raise ValidationFailed.one(field_name, problem)
    return value


def _address(field_name: str, value: str, *, utf8: bool) -> str:
    """Check a plain ``local@domain`` address and return the form to send.

    Without SMTPUTF8 the domain is IDNA-encoded and a non-ASCII local part is refused.
    """
    _header_text(field_name, value)
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValidationFailed.one(field_name, f"{value!r} is not an email address")
    if not _is_dot_atom(local):
        raise ValidationFailed.one(
            field_name, f"{value!r}: the part before @ has characters an address cannot carry"
        )
    ascii_domain = _idna(domain, field_name=field_name, address=value)
    if not utf8 and not local.isascii():
        raise SmtpUtf8Required(
            f"{field_name} address {value!r} has a non-ASCII name before the @, and the server "
            "does not offer SMTPUTF8: it cannot be sent through this server",
            step="compose",
        )
    result = f"{local}@{domain if utf8 else ascii_domain}"
    if len(result.encode()) > MAX_ADDRESS:
        raise ValidationFailed.one(field_name, f"{value!r} is longer than an address may be")
    return result


def _is_dot_atom(local: str) -> bool:
    atoms = local.split(".")
    return all(atom and all(c in _ATEXT or not c.isascii() for c in atom) for atom in atoms)


def _idna(domain: str, *, field_name: str = "from_address", address: str = "") -> str:
    """The ASCII (``xn--``) form of a domain, lowercased; refuses what is not a host name."""
    try:
        encoded = _idna_encode(domain)
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValidationFailed.one(
            field_name, f"{address or domain!r}: the domain is not a valid host name"
        ) from exc
    return encoded


@lru_cache(maxsize=4096)
def _idna_encode(domain: str) -> str:
    # A pure function, and ~30 µs a call: a campaign repeats the same few domains.
    # (lru_cache does not cache exceptions: a refused domain is checked each time.)
    return idna.encode(domain, uts46=True).decode("ascii")


def _attachment(index: int, attachment: Attachment) -> Attachment:
    where = f"attachment {index + 1}"
    try:
        _header_text("attachments", attachment.filename)
    except ValidationFailed as exc:
        msg = f"{where}: the filename {exc.problems[0].msg}"
        raise ValidationFailed.one("attachments", msg) from exc
    if not attachment.filename.strip():
        raise ValidationFailed.one("attachments", f"{where}: a filename is required")
    content_type = attachment.content_type.strip().lower() or "application/octet-stream"
    maintype, slash, subtype = content_type.partition("/")
    if not (slash and _is_token(maintype) and _is_token(subtype)) or maintype == "multipart":
        raise ValidationFailed.one(
            "attachments", f"{where}: {attachment.content_type!r} is not a content type"
        )
    return Attachment(attachment.filename.strip(), content_type, attachment.data)


def _is_token(value: str) -> bool:
    return bool(value) and all(c in _TOKEN for c in value)


def _unique(addresses: list[str]) -> list[str]:
    """Each recipient once (domains compare case-insensitively), in order of appearance."""
    seen: set[tuple[str, str]] = set()
    result = []
    for addr in addresses:
        local, _, domain = addr.rpartition("@")
        key = (local, domain.lower())
        if key not in seen:
            seen.add(key)
            result.append(addr)
    return result
