"""Looking a message up by Message-ID in a real Dovecot folder, and the copy to Sent that
first checks whether the server filed its own."""

from __future__ import annotations

from typing import Any

import pytest

from sendas.imap import append_to_sent
from sendas.imap.search import look_up_in_sent, message_id_of, searchable
from tests.imap.test_dovecot import endpoint, message

pytestmark = pytest.mark.dovecot


def test_message_id_of_reads_the_header_only() -> None:
    raw = b"Subject: x\r\nMessage-ID: <a.b@c>\r\n\r\nMessage-ID: <body@c>\r\n"
    assert message_id_of(raw) == "<a.b@c>"
    assert message_id_of(b"Subject: x\r\n\r\nMessage-ID: <body@c>\r\n") is None
    assert not searchable('<a"b@c>') and not searchable("") and searchable("<a.b@c>")


async def test_finds_exactly_the_message_with_that_id(dovecot_server: Any) -> None:
    account = dovecot_server.add_account("search", layout="special")
    ep = endpoint(dovecot_server, account)
    raw, msg_id = message("Filed")
    other_raw, other_id = message("Other")
    assert (await append_to_sent(ep, raw)).status == "appended"

    lookup = await look_up_in_sent(ep, [msg_id, other_id, '<quote"d@x>'])
    assert lookup.folder == "Sent Items"
    assert lookup.found == {msg_id}
    assert lookup.searched == {msg_id, other_id}

    # The copy to Sent with check_filed: a message already there is not copied twice; one
    # that is not gets copied, and the outcome says which.
    again = await append_to_sent(ep, raw, check_filed=True)
    assert again.status == "skipped" and again.filed_by_server is True
    fresh = await append_to_sent(ep, other_raw, check_filed=True)
    assert fresh.status == "appended" and fresh.filed_by_server is False
    stored = dovecot_server.read_mailbox(account, "Sent Items")
    assert sorted(m.raw for m in stored) == sorted([raw, other_raw])
