"""Progress at constant cost: a letter's progress and the history of letters read the counts
the outbox keeps, never the messages table (every statement sent is recorded)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from sendas.context import AppContext
from tests.api.test_campaigns import create, make_alias, set_status
from tests.api.test_reads_do_not_write import stamp_token, statements
from tests.conftest import Person

MESSAGES_TABLE = re.compile(r"\bMESSAGES\b")


def over_messages(seen: list[str]) -> list[str]:
    return [s for s in seen if MESSAGES_TABLE.search(s)]


def test_progress_and_history_never_query_the_messages(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    make_alias(client, alice)
    stamp_token(client, alice)
    c = create(client, alice)  # three recipients
    set_status(ctx, c["id"], "sent", 1)
    for finished in (False, True):
        with statements(ctx) as seen:
            body = client.get(f"/api/campaigns/{c['id']}", headers=alice.headers).json()
            page = client.get("/api/campaigns", headers=alice.headers).json()
        assert body["status"] == ("completed" if finished else "running")
        assert body["counts"]["sent"] == (3 if finished else 1)
        assert page["items"][0]["counts"] == body["counts"]
        assert any("CAMPAIGN_COUNTS" in s for s in seen)  # the listener saw the reads
        assert over_messages(seen) == []
        set_status(ctx, c["id"], "sent", 2)
