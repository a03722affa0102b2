"""One mailbox, one key: the form addresses are compared in (the suppression list, bounces).

A domain can be written in Unicode (``bücher.example``) or in its IDNA (punycode) form
(``xn--bcher-kva.example``); bounce reports often use the latter, users the former. The key
holds the Unicode form, as :func:`sendas.schemas.fields.normalize_email` does, and the
whole address in lower case (the local part too: one entry per mailbox, whatever the case).
"""

from __future__ import annotations

import idna


def mailbox_key(address: str) -> str:
    """``address`` trimmed, in lower case, with its domain in Unicode (UTS 46 mapped).

    A domain the IDNA codec refuses is only lower-cased: the key of something that is not
    a valid address need only be stable, not right.
    """
    local, at, domain = address.strip().lower().rpartition("@")
    if not at or (domain.isascii() and "xn--" not in domain):
        return local + at + domain
    try:
        unicode_domain = idna.decode(idna.encode(domain, uts46=True))
    except (idna.IDNAError, UnicodeError):
        return local + at + domain
    return f"{local}@{unicode_domain}"


def spellings(address: str) -> list[str]:
    """The stored forms that may mean ``address``: its :func:`mailbox_key`, then, for a
    domain that is not ASCII, its punycode spelling (rows written before keys had Unicode
    domains may hold that)."""
    key = mailbox_key(address)
    local, at, domain = key.rpartition("@")
    if not at or domain.isascii():
        return [key]
    try:
        return [key, f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"]
    except (idna.IDNAError, UnicodeError):
        return [key]
