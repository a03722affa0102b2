"""Modified UTF-7, the encoding of IMAP mailbox names (RFC 3501 section 5.1.3)."""

from __future__ import annotations

import base64
import binascii


def encode_mutf7(name: str) -> str:
    """The IMAP wire form of a mailbox name (``Envoyés`` -> ``Envoy&AOk-s``)."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            utf16 = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(utf16).decode("ascii").rstrip("=").replace("/", ","))
            out.append("-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def decode_mutf7(name: str) -> str:
    """The readable form of a wire mailbox name. A malformed name is returned unchanged."""
    if "&" not in name:
        return name
    out: list[str] = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            return name
        chunk = name[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            b64 = chunk.replace(",", "/")
            b64 += "=" * (-len(b64) % 4)
            try:
                out.append(base64.b64decode(b64, validate=True).decode("utf-16-be"))
            except (binascii.Error, UnicodeDecodeError):
                return name
        i = end + 1
    return "".join(out)
