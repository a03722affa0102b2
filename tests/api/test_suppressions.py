"""The suppression list over the API, and form letters that skip what is on it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from sendas.context import AppContext
from sendas.db.models import Campaign, Message, Suppression
from sendas.services.campaigns import create
from tests.api.test_campaigns import letter, make_alias, upload
from tests.conftest import Person


def suppress(client: TestClient, who: Person, address: str, **more: Any) -> dict[str, Any]:
    r = client.post("/api/suppressions", json={"address": address, **more}, headers=who.headers)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def queued_addresses(ctx: AppContext, campaign_id: int) -> list[str]:
    with ctx.db.read() as s:
        rows = s.scalars(
            select(Message).where(Message.campaign_id == campaign_id).order_by(Message.id)
        )
        return [(m.to_addrs or [""])[0] for m in rows]


# --- the list ---------------------------------------------------------------------------------


def test_add_list_search_and_remove(client: TestClient, alice: Person):
    entry = suppress(client, alice, "  Ann@Example.ORG ", reason="asked us to stop")
    assert entry["address"] == "ann@example.org"
    assert entry["source"] == "manual"
    assert entry["reason"] == "asked us to stop"
    assert entry["message_id"] is None
    suppress(client, alice, "ben@example.org")

    page = client.get("/api/suppressions", headers=alice.headers).json()
    assert [e["address"] for e in page["items"]] == ["ben@example.org", "ann@example.org"]
    assert page["next_before_id"] is None
    found = client.get("/api/suppressions?q=ANN", headers=alice.headers).json()
    assert [e["address"] for e in found["items"]] == ["ann@example.org"]
    # "_" is a character here, not a wildcard
    assert client.get("/api/suppressions?q=a_n", headers=alice.headers).json()["items"] == []

    r = client.delete(f"/api/suppressions/{entry['id']}", headers=alice.headers)
    assert r.status_code == 204
    page = client.get("/api/suppressions", headers=alice.headers).json()
    assert [e["address"] for e in page["items"]] == ["ben@example.org"]


def test_pages_newest_first(client: TestClient, alice: Person):
    for n in range(5):
        suppress(client, alice, f"p{n}@example.org")
    first = client.get("/api/suppressions?limit=2", headers=alice.headers).json()
    assert [e["address"] for e in first["items"]] == ["p4@example.org", "p3@example.org"]
    rest = client.get(
        f"/api/suppressions?limit=10&before_id={first['next_before_id']}", headers=alice.headers
    ).json()
    assert [e["address"] for e in rest["items"]] == [f"p{n}@example.org" for n in (2, 1, 0)]


def test_bad_and_repeated_addresses_are_422_naming_address(
    client: TestClient, ctx: AppContext, alice: Person
):
    r = client.post("/api/suppressions", json={"address": "not an address"}, headers=alice.headers)
    assert r.status_code == 422
    assert [p["loc"] for p in r.json()["detail"]] == [["body", "address"]]
    suppress(client, alice, "ann@example.org")
    r = client.post("/api/suppressions", json={"address": "ANN@example.org"}, headers=alice.headers)
    assert r.status_code == 422
    problem = r.json()["detail"][0]
    assert problem["loc"] == ["body", "address"]
    assert "already" in problem["msg"]
    with ctx.db.read() as s:
        assert len(list(s.scalars(select(Suppression)))) == 1


def test_another_users_entry_is_404_and_stays(client: TestClient, alice: Person, bob: Person):
    entry = suppress(client, alice, "ann@example.org")
    r = client.delete(f"/api/suppressions/{entry['id']}", headers=bob.headers)
    assert r.status_code == 404
    assert client.get("/api/suppressions", headers=bob.headers).json()["items"] == []
    assert len(client.get("/api/suppressions", headers=alice.headers).json()["items"]) == 1
    assert client.delete("/api/suppressions/2147483648", headers=alice.headers).status_code == 404


# --- form letters -------------------------------------------------------------------------------


def test_form_letter_skips_the_owners_suppressed_addresses(
    client: TestClient, ctx: AppContext, alice: Person, bob: Person
):
    make_alias(client, alice)
    suppress(client, alice, "BEN@example.org")
    suppress(client, bob, "cat@example.org")  # Bob's list does not bind Alice's letters
    r = client.post("/api/campaigns", json=letter(), headers=alice.headers)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["total"] == 2
    assert body["skipped_suppressed"] == 1
    assert body["skipped_addresses"] == ["ben@example.org"]
    assert body["invalid_count"] == 0  # the existing fields mean what they meant
    assert queued_addresses(ctx, body["id"]) == ["ann@example.org", "cat@example.org"]
    progress = client.get(f"/api/campaigns/{body['id']}", headers=alice.headers).json()
    assert (progress["skipped_suppressed"], progress["skipped_addresses"]) == (
        1,
        ["ben@example.org"],
    )


def test_removed_address_gets_the_next_letter(client: TestClient, ctx: AppContext, alice: Person):
    make_alias(client, alice)
    entry = suppress(client, alice, "ben@example.org")
    first = client.post("/api/campaigns", json=letter(), headers=alice.headers).json()
    assert "ben@example.org" not in queued_addresses(ctx, first["id"])
    client.delete(f"/api/suppressions/{entry['id']}", headers=alice.headers)
    second = client.post("/api/campaigns", json=letter(), headers=alice.headers).json()
    assert second["skipped_suppressed"] == 0
    assert second["skipped_addresses"] == []
    assert "ben@example.org" in queued_addresses(ctx, second["id"])


def test_csv_letter_skips_suppressed_rows(client: TestClient, ctx: AppContext, alice: Person):
    make_alias(client, alice)
    suppress(client, alice, "ben@example.org")
    csv_text = "email,first\nann@example.org,Ann\nBen@Example.org,Ben\nben@example.org,B2\n"
    r = upload(client, alice, csv_text)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["total"], body["skipped_suppressed"]) == (1, 2)
    assert body["skipped_addresses"] == ["ben@example.org"]  # each address once
    assert queued_addresses(ctx, body["id"]) == ["ann@example.org"]
    with ctx.db.read() as s:
        campaign = s.get(Campaign, body["id"])
        assert campaign is not None
        assert campaign.suppressed_skips == {"count": 2, "addresses": ["ben@example.org"]}


def test_letter_to_suppressed_addresses_only_is_422(
    client: TestClient, ctx: AppContext, alice: Person
):
    make_alias(client, alice)
    for address in ("ann@example.org", "ben@example.org", "cat@example.org"):
        suppress(client, alice, address)
    r = client.post("/api/campaigns", json=letter(), headers=alice.headers)
    assert r.status_code == 422
    problem = r.json()["detail"][0]
    assert problem["loc"] == ["body", "recipients"]
    assert "suppression list" in problem["msg"]
    r = upload(client, alice, "email,first\nann@example.org,Ann\n")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "file"]
    with ctx.db.read() as s:
        assert list(s.scalars(select(Campaign))) == []
        assert list(s.scalars(select(Message))) == []


def test_single_email_is_not_blocked(client: TestClient, ctx: AppContext, alice: Person):
    make_alias(client, alice)
    suppress(client, alice, "ann@example.org")
    r = client.post(
        "/api/messages",
        json={"to": ["ann@example.org"], "subject": "Hi", "text": "Hello"},
        headers=alice.headers,
    )
    assert r.status_code == 202, r.text


def test_a_long_list_is_looked_up_per_chunk(
    client: TestClient, ctx: AppContext, alice: Person, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(create, "SUPPRESSIONS_HELD", 1)  # two entries: not held
    make_alias(client, alice)
    suppress(client, alice, "ann@example.org")
    suppress(client, alice, "CAT@example.org")
    body = client.post("/api/campaigns", json=letter(), headers=alice.headers).json()
    assert (body["total"], body["skipped_suppressed"]) == (1, 2)
    assert body["skipped_addresses"] == ["ann@example.org", "cat@example.org"]
    assert queued_addresses(ctx, body["id"]) == ["ben@example.org"]
