"""Write the MIME bytes of a composed message directly, without the ``email`` package.

Why: ``EmailMessage`` parses every header it is given back into a token tree and refolds it
on output, and encodes quoted-printable bodies in pure Python; that costs over a millisecond
for a 5 KB text + HTML form letter, which capped the outbox at a few hundred messages per
second. The shapes :mod:`sendas.compose` builds are few and fixed (text, text + HTML,
optional attachments; addresses already validated to plain ``local@domain``), so we write
them with simple rules that are correct for *any* input that got past validation:

* non-ASCII text in a header (display name, subject) becomes RFC 2047 ``B`` encoded words
  of whole UTF-8 characters, at most 75 characters each, one per folded line (≤ 78);
* ASCII text stays as typed when it fits the line, folded only before a space; otherwise it
  too becomes encoded words (so no header line ever exceeds 78 octets, let alone 998);
* a display name with RFC 5322 specials is a quoted-string (``\\`` and ``"`` escaped);
* filenames use RFC 2231 (``filename*=utf-8''...``, continued when long) unless plain ASCII;
* text bodies are 7bit when ASCII with short lines and no NUL (as the stdlib, which also
  lets NUL through), else
  quoted-printable or base64 (whichever is shorter) via the C ``binascii`` encoders;
* every boundary is random and checked against the parts it separates.

:func:`build` returns ``None`` for what it does not cover (an address with characters
outside dot-atom text, which validation should already have refused); the caller then uses
the ``email`` package. Tests compare both paths on generated input by parsing them back.
"""

from __future__ import annotations

import binascii
import secrets
from collections.abc import Sequence
from urllib.parse import quote

# RFC 5322 says SHOULD stay within 78 characters per line; RFC 2047: an encoded word ≤ 75.
MAX_LINE = 78
MAX_ENCODED_WORD = 75
_EW_OVERHEAD = len("=?utf-8?b??=")
_CRLF = "\r\n"

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# RFC 5322 atext minus "=" and "?" (so no word can look like the start of an encoded word).
_PLAIN_WORD = frozenset(_ALNUM + "!#$%&'*+-/^_`{|}~")
# What a quoted-string may carry as typed (printable ASCII); '"' and '\\' get a backslash.
_QTEXT = frozenset(chr(c) for c in range(0x20, 0x7F))
# Characters of a validated address we write as they are: atext, ".", "@" and non-ASCII.
_ADDRESS_ASCII = frozenset(_ALNUM + "!#$%&'*+-/=?^_`{|}~.@")
# Filenames written as a plain quoted-string (no quote, backslash, or RFC 2231 lookalikes).
_FILENAME_PLAIN = frozenset(_ALNUM + " !#$%&'()+,-.=@[]^_`{}~")


def build(
    *,
    from_address: str,
    alias_name: str,
    reply_to: str | None,
    to: Sequence[str],
    cc: Sequence[str],
    subject: str,
    date: str,
    message_id: str,
    text: str,
    html: str | None,
    attachments: Sequence[tuple[str, str, bytes]],
) -> bytes | None:
    """The message bytes (CRLF line ends), or ``None`` when the input needs the slow path.

    Every value must already have passed :mod:`sendas.compose` validation; ``attachments``
    are ``(filename, content_type, data)`` with a validated, lowercased content type.
    """
    for addr in (from_address, *(() if reply_to is None else (reply_to,)), *to, *cc):
        if not _plain_address(addr):
            return None

    out: list[str] = [_from_header(alias_name, from_address)]
    if reply_to is not None:
        out.append(f"Reply-To: {reply_to}")
    if to:
        out.append(_address_list("To", to))
    elif not cc:
        out.append("To: undisclosed-recipients:;")
    if cc:
        out.append(_address_list("Cc", cc))
    out.append(_unstructured("Subject", subject))
    out.append(f"Date: {date}")
    out.append(f"Message-ID: {message_id}")
    out.append("MIME-Version: 1.0")

    body = _text_part("plain", text)
    if html is not None:
        body = _multipart("alternative", [body, _text_part("html", html)])
    if attachments:
        files = [_attachment_part(*a) for a in attachments]
        body = _multipart("mixed", [body, *files])
    head = _CRLF.join(out).encode("utf-8") + b"\r\n"
    return head + body[0] + b"\r\n" + body[1]


# --- headers ---------------------------------------------------------------------------------


def _plain_address(addr: str) -> bool:
    if addr.isascii():
        return _ADDRESS_ASCII.issuperset(addr)
    return all(c in _ADDRESS_ASCII or not c.isascii() for c in addr)


def _from_header(name: str, address: str) -> str:
    if not name:
        return f"From: {address}"
    phrase = _phrase(name)
    if phrase is not None:
        line = f"From: {phrase} <{address}>"
        if len(line) <= MAX_LINE:
            return line
        if len(phrase) + 6 <= MAX_LINE:  # the address on a line of its own
            return f"From: {phrase}\r\n <{address}>"
    words = _encoded_words(name, MAX_LINE - len("From: "))
    last = len(words[-1]) + (len("From: ") if len(words) == 1 else 1)
    sep = " " if last + len(address) + 3 <= MAX_LINE else _CRLF + " "
    return "From: " + "\r\n ".join(words) + sep + f"<{address}>"


def _phrase(name: str) -> str | None:
    """The display name as atoms, or as a quoted-string; ``None`` if it needs encoding."""
    if not name.isascii():
        return None
    if all(word and _PLAIN_WORD.issuperset(word) for word in name.split(" ")):
        return name
    if _QTEXT.issuperset(name):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return None  # pragma: no cover - validation refuses control characters


def _address_list(field: str, addresses: Sequence[str]) -> str:
    line = f"{field}: {addresses[0]}"
    lines: list[str] = []
    for addr in addresses[1:]:
        if len(line) + 2 + len(addr) <= MAX_LINE:
            line += f", {addr}"
        else:
            lines.append(line + ",")
            line = f" {addr}"
    lines.append(line)
    return _CRLF.join(lines)


def _unstructured(field: str, value: str) -> str:
    prefix = f"{field}: "
    if value.isascii():
        if len(prefix) + len(value) <= MAX_LINE:
            return prefix + value
        folded = _fold_at_spaces(prefix, value)
        if folded is not None:
            return folded
    return prefix + "\r\n ".join(_encoded_words(value, MAX_LINE - len(prefix)))


def _fold_at_spaces(prefix: str, value: str) -> str | None:
    """Fold before spaces so that every line fits; ``None`` when a word is too long."""
    lines: list[str] = []
    line = prefix
    start = 0
    while start < len(value):
        # The next token: any spaces and then a run of non-spaces.
        end = start
        while end < len(value) and value[end] == " ":
            end += 1
        next_space = value.find(" ", end)
        end = len(value) if next_space < 0 else next_space
        token = value[start:end]
        if len(line) + len(token) <= MAX_LINE:
            line += token
        elif token[0] == " " and len(token) <= MAX_LINE:
            lines.append(line)
            line = token  # a folded line starts with the space it was folded before
        else:
            return None
        start = end
    lines.append(line)
    return _CRLF.join(lines)


def _encoded_words(text: str, first_room: int) -> list[str]:
    """RFC 2047 ``B`` words of whole UTF-8 characters; the first fits ``first_room``."""
    data = text.encode("utf-8")
    words: list[str] = []
    room = min(first_room, MAX_ENCODED_WORD)
    start = 0
    while start < len(data):
        end = min(len(data), start + 3 * ((room - _EW_OVERHEAD) // 4))
        while end < len(data) and 0x80 <= data[end] < 0xC0:  # not inside a character
            end -= 1
        encoded = binascii.b2a_base64(data[start:end], newline=False).decode("ascii")
        words.append(f"=?utf-8?b?{encoded}?=")
        start = end
        room = MAX_ENCODED_WORD
    return words or ["=?utf-8?b??="]


# --- bodies ----------------------------------------------------------------------------------

# A part: (its header lines, its body ending in CRLF).
_Part = tuple[bytes, bytes]


def _text_part(subtype: str, text: str) -> _Part:
    # As the email package does (bytes.splitlines: only CR, LF and CRLF break lines; a
    # final line break is added), with CRLF line ends.
    raw = text.encode("utf-8")
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    data = raw.replace(b"\n", b"\r\n")
    if not data.endswith(b"\n"):
        data += b"\r\n"
    if data.isascii() and b"\0" not in data and not _has_long_line(data):
        cte, body = "7bit", data
    else:
        body = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
        cte = "quoted-printable"
        b64_chars = 4 * ((len(data) + 2) // 3)
        if len(body) > b64_chars + 2 * ((b64_chars + 75) // 76):  # base64 is shorter
            cte, body = "base64", _base64(data)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: {cte}\r\n'
    return head.encode("ascii"), body


def _has_long_line(data: bytes) -> bool:
    """A line longer than the email package's 7bit limit (78), in CRLF-only ``data``.

    Split, not a regex: ``[^\r\n]{79}`` backtracks at every offset (0.7 ms for 5 KB)."""
    return max(map(len, data.split(b"\n"))) > MAX_LINE + 1  # + 1: the CR; map: no Python loop


def _attachment_part(filename: str, content_type: str, data: bytes) -> _Part:
    head = (
        f"Content-Type: {content_type}\r\n"
        "Content-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: attachment;{_filename_param(filename)}\r\n"
    )
    return head.encode("ascii"), _base64(data)


def _filename_param(name: str) -> str:
    plain = f' filename="{name}"'
    if _FILENAME_PLAIN.issuperset(name) and "*" not in name:
        if len("Content-Disposition: attachment;") + len(plain) <= MAX_LINE:
            return plain
        if len(plain) <= MAX_LINE:
            return "\r\n" + plain
    encoded = "utf-8''" + quote(name, safe="")
    if len(" filename*=") + len(encoded) <= MAX_LINE - 1:
        return f"\r\n filename*={encoded}"
    # RFC 2231 continuations, cut between %XX escapes (never inside one).
    pieces: list[str] = []
    room = MAX_LINE - len(" filename*000*=;")
    start = 0
    while start < len(encoded):
        end = min(len(encoded), start + room)
        pct = encoded.rfind("%", max(start, end - 2), end)
        if pct >= 0 and end < len(encoded):
            end = pct
        pieces.append(encoded[start:end])
        start = end
    return ";".join(f"\r\n filename*{i}*={p}" for i, p in enumerate(pieces))


def _base64(data: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    if not encoded:
        return b""
    return b"\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + b"\r\n"


def _multipart(subtype: str, parts: list[_Part]) -> _Part:
    while True:
        boundary = "=_" + secrets.token_hex(16)
        delimiter = b"--" + boundary.encode("ascii")
        # QP and base64 can never contain "=_"; only a 7bit part could, by a 2^-128 chance.
        if not any(delimiter in body for _, body in parts):
            break
    out: list[bytes] = []
    for head, body in parts:
        out += [delimiter, b"\r\n", head, b"\r\n", body, b"\r\n"]
    out += [delimiter, b"--\r\n"]
    own_head = f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n'
    return own_head.encode("ascii"), b"".join(out)
