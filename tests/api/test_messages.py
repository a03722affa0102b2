"""/api/messages and /api/system/messages: 202 only once the row is committed, validation
per field with nothing written, ownership as 404, settling unknown messages."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from sendas.context import AppContext
from sendas.db.models import Alias, Message
from sendas.outbox.lanes import alias_lane, pause_lane
from tests.conftest import Person


def new_alias(client: TestClient, person: Person, **extra: Any) -> int:
    body = {
        "description": extra.pop("description", "Work"),
        "alias_name": "Alice Example",
        "from_address": person.email,
        "smtp_server": "smtp.example.com:587",
        "smtp_username": person.email,
        "smtp_password": "secret password",
        **extra,
    }
    r = client.post("/api/aliases", json=body, headers=person.headers)
    assert r.status_code == 201, r.text
    alias_id: int = r.json()["id"]
    return alias_id


def count_messages(ctx: AppContext) -> int:
    with ctx.db.read() as s:
        return s.query(Message).count()


def test_send_queues_a_composed_message_and_answers_202(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    alias_id = new_alias(client, alice)
    body = {
        "to": ["bob@example.org"], "cc": ["carol@example.org"], "bcc": ["dave@example.org"],
        "subject": "Quarterly figures", "text": "See attached.", "html": "<p>See attached.</p>",
        "attachments": [{"filename": "q3.csv", "content_type": "text/csv",
                         "content_base64": base64.b64encode(b"a,b\n1,2\n").decode()}],
    }  # fmt: skip
    r = client.post("/api/messages", json=body, headers=alice.headers)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["status"] == "queued" and out["alias_id"] == alias_id  # the default alias
    assert out["recipients"] == ["bob@example.org", "carol@example.org", "dave@example.org"]
    assert "raw_base64" not in out or out["raw_base64"] is None
    with ctx.db.read() as s:
        m = s.get_one(Message, out["id"])
        assert m.lane == f"alias:{alias_id}" and m.kind == "single"
        assert m.raw is not None and b"Subject: Quarterly figures" in m.raw
        assert b"dave@example.org" not in m.raw  # Bcc only in the envelope
        assert m.message_id and m.message_id.encode() in m.raw

    got = client.get(f"/api/messages/{out['id']}", headers=alice.headers).json()
    assert got["status"] == "queued" and got["subject"] == "Quarterly figures"
    assert got.get("raw_base64") is None
    raw = client.get(f"/api/messages/{out['id']}?include_raw=true", headers=alice.headers)
    assert b"Quarterly figures" in base64.b64decode(raw.json()["raw_base64"])


def test_bad_fields_give_422_each_and_write_nothing(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    new_alias(client, alice)
    before = count_messages(ctx)
    r = client.post(
        "/api/messages",
        json={"to": ["not-an-address"], "subject": "a\r\nBcc: x@evil.test",
              "attachments": [{"filename": "a.txt", "content_base64": "%%%"}]},
        headers=alice.headers,
    )  # fmt: skip
    assert r.status_code == 422
    locs = {tuple(d["loc"]) for d in r.json()["detail"]}
    assert ("body", "to", 0) in locs and ("body", "subject") in locs
    assert ("body", "attachments", 0, "content_base64") in locs
    r = client.post("/api/messages", json={"subject": "no one"}, headers=alice.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "to"]
    assert count_messages(ctx) == before


def test_without_alias_the_user_is_told_to_create_one(client: TestClient, bob: Person) -> None:
    r = client.post("/api/messages", json={"to": ["x@example.org"]}, headers=bob.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "alias_id"]


def test_another_users_alias_and_message_are_404(
    client: TestClient, alice: Person, bob: Person
) -> None:
    alias_id = new_alias(client, alice)
    new_alias(client, bob)
    r = client.post("/api/messages", json={"alias_id": alias_id, "to": ["x@example.org"]},
                    headers=bob.headers)  # fmt: skip
    assert r.status_code == 404
    mine = client.post("/api/messages", json={"to": ["x@example.org"]}, headers=alice.headers)
    mid = mine.json()["id"]
    assert client.get(f"/api/messages/{mid}", headers=bob.headers).status_code == 404
    assert client.post(f"/api/messages/{mid}/resend", headers=bob.headers).status_code == 404
    assert client.get("/api/messages", headers=bob.headers).json()["items"] == []
    assert client.get(f"/api/messages/{mid}").status_code == 401


def test_alias_needing_attention_still_queues(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    alias_id = new_alias(client, alice)
    with ctx.db.write() as s:
        s.get_one(Alias, alias_id).needs_reauth = True
    r = client.post("/api/messages", json={"to": ["x@example.org"]}, headers=alice.headers)
    assert r.status_code == 202 and r.json()["status"] == "queued"


def test_list_is_newest_first_filtered_and_paginated(client: TestClient, alice: Person) -> None:
    new_alias(client, alice)
    ids = [
        client.post("/api/messages", json={"to": ["x@example.org"], "subject": f"n{i}"},
                    headers=alice.headers).json()["id"]
        for i in range(5)
    ]  # fmt: skip
    page = client.get("/api/messages?limit=2&offset=1", headers=alice.headers).json()
    assert [m["id"] for m in page["items"]] == [ids[3], ids[2]] and page["total"] == 5
    queued = client.get("/api/messages?status=queued", headers=alice.headers).json()
    assert queued["total"] == 5
    assert client.get("/api/messages?status=sent", headers=alice.headers).json()["total"] == 0
    assert client.get("/api/messages?status=bogus", headers=alice.headers).status_code == 422


def test_resend_and_mark_sent_only_for_unknown(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    new_alias(client, alice)
    a = client.post("/api/messages", json={"to": ["x@example.org"]}, headers=alice.headers)
    b = client.post("/api/messages", json={"to": ["y@example.org"]}, headers=alice.headers)
    a_id, b_id = a.json()["id"], b.json()["id"]
    assert client.post(f"/api/messages/{a_id}/resend", headers=alice.headers).status_code == 409
    assert client.post(f"/api/messages/{a_id}/mark-sent", headers=alice.headers).status_code == 409
    with ctx.db.write() as s:
        for mid in (a_id, b_id):
            s.get_one(Message, mid).status = "unknown"
    r = client.post(f"/api/messages/{a_id}/resend", headers=alice.headers)
    assert r.status_code == 202 and r.json()["status"] == "queued"
    r = client.post(f"/api/messages/{b_id}/mark-sent", headers=alice.headers)
    assert r.status_code == 200 and r.json()["status"] == "sent" and r.json()["sent_at"]
    audit = client.get("/api/audit", headers=alice.headers).json()
    actions = {e["action"] for e in (audit if isinstance(audit, list) else audit["items"])}
    assert {"message.resend", "message.mark_sent"} <= actions


def test_system_messages_are_admin_only_and_use_the_system_lane(
    client: TestClient, ctx: AppContext, admin: Person, alice: Person
) -> None:
    body = {"to": ["ops@example.org"], "subject": "Nightly report", "text": "ok"}
    assert client.post("/api/system/messages", json=body, headers=alice.headers).status_code == 403
    r = client.post("/api/system/messages", json=body, headers=admin.headers)
    assert r.status_code == 409  # not configured yet
    put = client.put("/api/system/outgoing", headers=admin.headers, json={
        "from_address": "noreply@example.com", "from_name": "Example CRM",
        "smtp_server": "smtp.example.com:587"})  # fmt: skip
    assert put.status_code == 200, put.text
    r = client.post("/api/system/messages", json=body, headers=admin.headers)
    assert r.status_code == 202, r.text
    with ctx.db.read() as s:
        m = s.get_one(Message, r.json()["id"])
        assert m.lane == "system" and m.kind == "system" and m.alias_id is None
        assert m.envelope_from == "noreply@example.com"
        assert m.raw is not None and b"Example CRM" in m.raw


# --- what an opened message shows (headers, parts, attachments, why it waits) ---------------


def test_get_shows_headers_attachments_and_why_it_waits(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    alias_id = new_alias(client, alice, reply_to="replies@example.org")
    body = {
        "to": ["bob@example.org"], "cc": ["carol@example.org"], "subject": "Figures",
        "text": "See attached.", "html": "<p>See attached.</p>",
        "attachments": [{"filename": "q3.csv", "content_type": "text/csv",
                         "content_base64": base64.b64encode(b"a,b\n1,2\n").decode()}],
    }  # fmt: skip
    mid = client.post("/api/messages", json=body, headers=alice.headers).json()["id"]

    got = client.get(f"/api/messages/{mid}", headers=alice.headers).json()
    headers = got["headers"]
    assert "Alice Example" in headers["From"] and headers["To"] == "bob@example.org"
    assert headers["Cc"] == "carol@example.org" and headers["Reply-To"] == "replies@example.org"
    assert headers["Subject"] == "Figures" and headers["Message-ID"] and headers["Date"]
    assert got["attachments"] == [
        {"index": 0, "filename": "q3.csv", "content_type": "text/csv", "size": 8}
    ]
    assert got["rendered"] is True and got["attempts"] == 0
    assert got["waiting"]["kind"] == "turn"

    # The alias's server refused the sign-in: the message says so, not just "queued".
    with ctx.db.write() as s:
        s.get_one(Alias, alias_id).needs_reauth = True
    got = client.get(f"/api/messages/{mid}", headers=alice.headers).json()
    assert got["status"] == "queued"
    assert got["waiting"]["kind"] == "needs_attention" and got["waiting"]["until"] is None
    assert "sign-in" in got["waiting"]["reason"]

    # A settled message does not wait; the list keeps its old shape.
    with ctx.db.write() as s:
        s.get_one(Message, mid).status = "sent"
    assert client.get(f"/api/messages/{mid}", headers=alice.headers).json()["waiting"] is None
    listed = client.get("/api/messages", headers=alice.headers).json()["items"][0]
    assert listed["id"] == mid and "waiting" not in listed


def test_a_paused_lane_gives_the_time_it_resumes(
    client: TestClient, ctx: AppContext, alice: Person
) -> None:
    alias_id = new_alias(client, alice)
    mid = client.post("/api/messages", json={"to": ["x@example.org"]}, headers=alice.headers)
    until = datetime.now(UTC) + timedelta(hours=3)
    with ctx.db.write() as s:
        pause_lane(s, alias_lane(alias_id), until, "550 5.4.5 Daily user sending quota exceeded")
    got = client.get(f"/api/messages/{mid.json()['id']}", headers=alice.headers).json()
    assert got["waiting"]["kind"] == "paused" and "5.4.5" in got["waiting"]["reason"]
    assert datetime.fromisoformat(got["waiting"]["until"]) == until


def test_a_form_letter_message_before_sending_says_it_is_not_rendered(
    client: TestClient, alice: Person
) -> None:
    new_alias(client, alice)
    body = {
        "subject": "Hello {{ name }}",
        "text": "Dear {{ name }}",
        "recipients": [{"email": "ann@example.org", "fields": {"name": "Ann"}}],
    }
    r = client.post("/api/campaigns", json=body, headers=alice.headers)
    assert r.status_code in (200, 201, 202), r.text
    listed = client.get(f"/api/messages?campaign_id={r.json()['id']}", headers=alice.headers).json()
    got = client.get(f"/api/messages/{listed['items'][0]['id']}", headers=alice.headers).json()
    assert got["rendered"] is False and got["attachments"] == []
    assert got["headers"]["To"] == "ann@example.org"
    assert got["waiting"] is not None
