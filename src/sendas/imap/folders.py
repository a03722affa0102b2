"""Mailbox listings and the choice of the Sent folder (pure functions, no I/O)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sendas.imap.mutf7 import decode_mutf7, encode_mutf7

# Names mail clients and servers give the Sent folder, most common first. Compared
# case-insensitively, as a top-level folder or directly below INBOX.
COMMON_SENT_NAMES: tuple[str, ...] = (
    "Sent",
    "Sent Items",
    "Sent Messages",
    "Sent Mail",
    "Sent-Mail",
    "[Gmail]/Sent Mail",
    # German, French, Spanish, Italian, Dutch, Portuguese
    "Gesendet",
    "Gesendete Elemente",
    "Gesendete Objekte",
    "Envoyés",
    "Éléments envoyés",
    "Messages envoyés",
    "Elementos enviados",
    "Enviados",
    "Posta inviata",
    "Elementi inviati",
    "Inviati",
    "Verzonden items",
    "Verzonden",
    "Verzonden berichten",
    "Itens enviados",
    "Mensagens enviadas",
    "Enviadas",
    # Nordic, Central and Eastern European, Greek, Turkish
    "Skickat",
    "Skickade objekt",
    "Sendt",
    "Sendte elementer",
    "Sendte",
    "Lähetetyt",
    "Lähetetyt kohteet",
    "Wysłane",
    "Elementy wysłane",
    "Odeslaná pošta",
    "Odeslané",
    "Elküldött elemek",
    "Elküldött",
    "Trimise",
    "Elemente trimise",
    "Отправленные",
    "Надіслані",
    "Απεσταλμένα",
    "Gönderilmiş Öğeler",
    "Gönderilenler",
    # East Asian
    "已发送",
    "已傳送",
    "寄件備份",
    "送信済みアイテム",
    "送信済み",
    "보낸 편지함",
)


@dataclass(frozen=True)
class Folder:
    """One selectable mailbox from a LIST reply.

    ``raw`` is the wire name (modified UTF-7), to use in commands; ``name`` is readable.
    """

    raw: str
    name: str
    delimiter: str | None
    attributes: frozenset[str]

    @property
    def is_sent(self) -> bool:
        return "\\sent" in self.attributes

    @property
    def selectable(self) -> bool:
        return not ({"\\noselect", "\\nonexistent"} & self.attributes)

    def parts(self) -> list[str]:
        return self.name.split(self.delimiter) if self.delimiter else [self.name]


class ListParseError(ValueError):
    """A LIST reply line this parser does not understand."""


_ATOM = re.compile(rb'[^\s()"{}\\]+|\\[^\s()"{}]*')


def _quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    pos += 1
    while pos < len(data):
        ch = data[pos]
        if ch == 0x5C and pos + 1 < len(data):  # backslash escapes the next character
            out.append(data[pos + 1])
            pos += 2
        elif ch == 0x22:
            return bytes(out), pos + 1
        else:
            out.append(ch)
            pos += 1
    raise ListParseError("unterminated quoted string")


def parse_list_line(line: bytes, literal: bytes | None = None) -> Folder:
    """Parse one LIST reply (after ``* LIST``): ``(\\Flags) "delim" name``.

    ``literal`` is the name when the server sent it as a literal (``{n}``).
    """
    data = line.strip()
    if not data.startswith(b"("):
        raise ListParseError("no attribute list")
    end = data.find(b")")
    if end < 0:
        raise ListParseError("unterminated attribute list")
    attributes = frozenset(a.decode("ascii", "replace").lower() for a in data[1:end].split())
    pos = end + 1
    while pos < len(data) and data[pos : pos + 1].isspace():
        pos += 1
    delimiter: str | None
    if data[pos : pos + 1] == b'"':
        raw_delim, pos = _quoted(data, pos)
        delimiter = raw_delim.decode("ascii", "replace") or None
    elif data[pos : pos + 3].upper() == b"NIL":
        delimiter, pos = None, pos + 3
    else:
        raise ListParseError("no hierarchy delimiter")
    rest = data[pos:].lstrip()
    if literal is not None and re.fullmatch(rb"\{\d+\+?\}", rest):
        raw_name = literal
    elif rest.startswith(b'"'):
        raw_name, _ = _quoted(rest, 0)
    else:
        match = _ATOM.match(rest)
        if not match:
            raise ListParseError("no mailbox name")
        raw_name = match.group(0)
    raw = raw_name.decode("utf-8", "replace")
    if raw.upper() == "INBOX":
        raw = "INBOX"
    return Folder(raw=raw, name=decode_mutf7(raw), delimiter=delimiter, attributes=attributes)


def parse_list_response(data: Iterable[object]) -> list[Folder]:
    """Folders from imaplib's LIST data (bytes lines; ``(line, literal)`` tuples).

    Lines that cannot be parsed are skipped rather than failing the whole listing.
    """
    folders: list[Folder] = []
    for item in data:
        try:
            if isinstance(item, tuple) and len(item) == 2:
                head, literal = item
                if isinstance(head, bytes) and isinstance(literal, bytes):
                    folders.append(parse_list_line(head, literal))
            elif isinstance(item, bytes) and item.strip() and item.strip() != b")":
                folders.append(parse_list_line(item))
        except ListParseError:
            continue
    return folders


def _key(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold().strip()


_COMMON_KEYS = [_key(n) for n in COMMON_SENT_NAMES]


def _common_rank(folder: Folder) -> tuple[int, int] | None:
    """(name priority, 0 top-level / 1 below INBOX) when the folder has a common Sent name."""
    parts = folder.parts()
    full = _key(folder.name)
    if full in _COMMON_KEYS:
        return (_COMMON_KEYS.index(full), 0)
    if folder.delimiter and len(parts) >= 2 and _key(parts[0]) == "inbox":
        below = _key(folder.delimiter.join(parts[1:]))
        if below in _COMMON_KEYS:
            return (_COMMON_KEYS.index(below), 1)
    # "[Gmail]/Sent Mail" under another delimiter or prefix.
    if folder.delimiter and folder.delimiter != "/":
        slashed = _key("/".join(parts))
        if slashed in _COMMON_KEYS:
            return (_COMMON_KEYS.index(slashed), 0)
    return None


def choose_sent_folder(folders: Sequence[Folder]) -> Folder | None:
    """The Sent folder: SPECIAL-USE ``\\Sent`` first, then a common (or localized) name."""
    usable = [f for f in folders if f.selectable]
    marked = [f for f in usable if f.is_sent]
    if marked:
        # Several marked folders: prefer a familiar name, then the shortest path.
        return min(marked, key=lambda f: (_common_rank(f) or (len(_COMMON_KEYS), 0), len(f.name)))
    ranked = [(rank, f) for f in usable if (rank := _common_rank(f)) is not None]
    if ranked:
        return min(ranked, key=lambda pair: pair[0])[1]
    return None


def match_folder(folders: Sequence[Folder], wanted: str) -> Folder | None:
    """The folder an account's ``sent_folder`` setting names: by wire name, readable name,
    or case-insensitively; ``/`` in the setting also stands for the server's delimiter."""
    for folder in folders:
        if folder.raw == wanted or folder.name == wanted:
            return folder
    key = _key(wanted)
    for folder in folders:
        if key in (_key(folder.raw), _key(folder.name)):
            return folder
    for folder in folders:
        if folder.delimiter and folder.delimiter != "/" and key == _key("/".join(folder.parts())):
            return folder
    return None


def wire_name(name: str) -> str:
    """The modified UTF-7 wire form of a readable folder name (ASCII names are unchanged)."""
    return encode_mutf7(name)


def quote_mailbox(raw: str) -> str:
    """A mailbox name as an IMAP quoted string."""
    if any(c in raw for c in "\r\n\0"):
        raise ValueError("a mailbox name cannot contain line breaks")
    return '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'
