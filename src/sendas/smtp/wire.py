"""Stateless pieces of the SMTP wire format: replies, EHLO keywords, message data framing
and envelope addresses. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass

import idna

from sendas.smtp.replies import ReplyKind, classify


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete (possibly multi-line) server reply; ``text`` joins lines with newlines."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def kind(self) -> ReplyKind:
        return classify(self.code, self.text)

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.text.splitlines())}".rstrip()


class MalformedReply(ValueError):
    """The server sent something that is not an SMTP reply."""


def check_line(line: bytes) -> bytes:
    """``line`` when it has the shape of a reply line (three digits, then a space, a hyphen
    or the line end); raises :class:`MalformedReply` otherwise (e.g. an SSH banner, whose
    ``SSH-`` would otherwise read as a continuation line)."""
    if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in _AFTER_CODE:
        raise MalformedReply("not an SMTP reply")
    return line


_AFTER_CODE = (b" ", b"-", b"\r", b"\n", b"")


def parse_reply(lines: list[bytes]) -> Reply:
    """Build a :class:`Reply` from its raw lines (each ending in CRLF or LF)."""
    first = check_line(lines[0])
    code = int(first[:3])
    text = "\n".join(line[4:].rstrip(b"\r\n").decode("utf-8", errors="replace") for line in lines)
    return Reply(code, text)


_ONE_LINE: dict[bytes, Reply] = {}
_ONE_LINE_MAX = 512


def one_line_reply(line: bytes) -> Reply:
    """The reply of a single (last) line such as ``250 2.0.0 Ok``. A server repeats a few
    such lines thousands of times in a run, so each is parsed once and kept (a bounded
    table, emptied when full: per-message texts such as queue ids just pass through)."""
    reply = _ONE_LINE.get(line)
    if reply is None:
        reply = parse_reply([line])
        if len(_ONE_LINE) >= _ONE_LINE_MAX:
            _ONE_LINE.clear()
        _ONE_LINE[line] = reply
    return reply


def is_last_line(line: bytes) -> bool:
    """A reply's last line has a space (or nothing) after the code, not a hyphen."""
    return line[3:4] != b"-"


def parse_ehlo(text: str) -> dict[str, str]:
    """EHLO keywords (upper case) -> their parameters. The first line is the greeting."""
    extensions: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions


def auth_mechanisms(extensions: dict[str, str]) -> set[str]:
    """Mechanisms from ``AUTH`` (and the legacy ``AUTH=`` form)."""
    mechanisms = set(extensions.get("AUTH", "").upper().split())
    for keyword, params in extensions.items():
        if keyword.startswith("AUTH="):
            mechanisms.update(keyword[5:].split())
            mechanisms.update(params.upper().split())
    return mechanisms


_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")


def crlf_only(data: bytes) -> bool:
    """Whether every line of ``data`` ends with CRLF (no bare CR or LF): three passes over
    the message, a third of framing it, done once where it is composed (a render process)
    rather than in the worker that sends it."""
    crlf = data.count(b"\r\n")
    return data.count(b"\n") == crlf and data.count(b"\r") == crlf


def frame_data(data: bytes, *, crlf: bool = False) -> bytes:
    """Message bytes -> what goes on the wire after ``354``: CRLF line endings, dot-stuffed
    (RFC 5321 4.5.2), ending with ``CRLF.CRLF``. ``crlf``: :func:`crlf_only` is known to
    hold (not checked again)."""
    if not (crlf or crlf_only(data)):
        data = _LINE_ENDINGS.sub(b"\r\n", data)
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def frame_chunk(data: bytes, *, crlf: bool = False) -> bytes:
    """Message bytes -> one ``BDAT <size> LAST`` command with its chunk (RFC 3030): CRLF
    line endings, no dot-stuffing and no end-of-data line (the size delimits the data).
    ``crlf`` as for :func:`frame_data`."""
    if not (crlf or crlf_only(data)):
        data = _LINE_ENDINGS.sub(b"\r\n", data)
    return b"BDAT %d LAST\r\n" % len(data) + data


_FORBIDDEN_IN_ADDRESS = re.compile(r"[\s<>\x00]")


class AddressProblem(ValueError):
    """An envelope address cannot be put on the wire."""


def needs_smtputf8(address: str) -> bool:
    """True when the local part (before the last @) is not ASCII."""
    local, _, _ = address.rpartition("@")
    return not local.isascii()


def wire_address(address: str, smtputf8: bool) -> str:
    """The address as written inside ``<>``: IDN domains in IDNA form unless SMTPUTF8 is in
    use. Raises :class:`AddressProblem` for line breaks, brackets or an invalid domain."""
    if _FORBIDDEN_IN_ADDRESS.search(address):
        raise AddressProblem("address contains spaces, brackets or line breaks")
    if not address:
        return ""  # the null reverse-path <>
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise AddressProblem("address needs a local part and a domain")
    if smtputf8 or domain.isascii():
        return address
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        raise AddressProblem("the domain is not a valid internationalized domain") from None
    return f"{local}@{ascii_domain}"
