"""An `unknown` message of a finished form letter can be sent again: the letter reopens."""

from __future__ import annotations

from fastapi.testclient import TestClient

from sendas.context import AppContext
from sendas.db.models import Campaign, Message
from sendas.outbox.completion import complete_if_done
from sendas.outbox.counts import recount
from tests.api.test_aliases import create
from tests.conftest import Person


def test_resend_reopens_a_completed_campaign(client: TestClient, alice: Person, ctx: AppContext):
    create(client, alice)
    r = client.post(
        "/api/campaigns",
        json={
            "subject": "Hi {{ name }}",
            "text": "Hello {{ name }}",
            "recipients": [{"email": "x@example.org", "fields": {"name": "X"}}],
        },
        headers=alice.headers,
    )
    assert r.status_code == 202, r.text
    campaign_id = r.json()["id"]
    with ctx.db.write() as s:  # as a worker that died mid-submission would leave it
        msg = s.query(Message).filter_by(campaign_id=campaign_id).one()
        msg.status = "unknown"
        message_id = msg.id
        recount(s, campaign_id)
        # The outbox completes a letter in the transaction that settles its last message.
        complete_if_done(s, s.get_one(Campaign, campaign_id))
    status = client.get(f"/api/campaigns/{campaign_id}", headers=alice.headers).json()
    assert status["status"] == "completed" and status["counts"]["unknown"] == 1
    r = client.post(f"/api/messages/{message_id}/resend", headers=alice.headers)
    assert r.status_code == 202, r.text
    status = client.get(f"/api/campaigns/{campaign_id}", headers=alice.headers).json()
    assert status["status"] == "running" and status["counts"]["queued"] == 1
