"""The one check of text bound for a message header (alias name, From name, addresses,
subject), shared by the save-time schemas and the message builder so that what was saved
can always be sent."""

from __future__ import annotations

import re
import unicodedata

# RFC 5322 line limit; a header value longer than this is refused outright.
MAX_HEADER_VALUE = 998

# Text shaped like an RFC 2047 encoded word. The email package (and every mail reader) would
# decode it instead of showing it, so "=?utf-8?q?Bcc=3A_x?=" would read "Bcc: x".
ENCODED_WORD = re.compile(r"=\?[^?]*\?[^?]*\?[^?]*\?=")

# Control characters (tab and U+0085 too), lone surrogates, line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def header_text_problem(value: str) -> str | None:
    """What makes ``value`` unfit for a header, in words for a person; None when it fits."""
    for ch in value:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            what = "a line break" if ch in "\r\n\x85\u2028\u2029" else "a control character"
            return f"must not contain {what} (U+{ord(ch):04X})"
    if ENCODED_WORD.search(value):
        return "must not contain text of the form =?charset?encoding?text?="
    if len(value) > MAX_HEADER_VALUE:
        return f"is longer than {MAX_HEADER_VALUE} characters"
    return None
