"""An SMTP server that files every message it accepts in a Dovecot Sent folder, as Gmail
and Microsoft 365 do.

``filing_script(dovecot, account, folder)`` is an ``smtpd(script=...)`` entry for
``"DATA_END"``: before the server answers the end of data, the message is APPENDed over
IMAP to ``folder`` of ``account`` (the copy exists before the client hears 250). With
``then=DROP`` the server files the message and drops the connection instead of replying:
the server accepted it, the client cannot know (a message left ``unknown``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from tests.servers.smtpd import Received, ScriptValue


def filing_script(
    dovecot: Any, account: Any, folder: str, *, then: ScriptValue = None
) -> dict[str, Callable[[Received], ScriptValue]]:
    """The ``script`` for :func:`tests.servers.smtpd.smtpd`: file, then reply ``then``
    (None: the normal 250)."""

    def file_it(received: Received) -> ScriptValue:
        imap = dovecot.connect(account)
        try:
            data = received.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            typ, reply = imap.append(f'"{folder}"', "(\\Seen)", None, data)
            assert typ == "OK", reply
        finally:
            with contextlib.suppress(Exception):
                imap.logout()
        return then

    return {"DATA_END": file_it}
