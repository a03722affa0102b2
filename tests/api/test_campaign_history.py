"""GET /api/campaigns: a user's form letters, newest first, with counts and dates."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from sendas.context import AppContext
from tests.api.test_campaigns import letter, make_alias
from tests.conftest import Person


def send(client: TestClient, who: Person, subject: str) -> dict[str, Any]:
    r = client.post("/api/campaigns", json=letter(subject=subject), headers=who.headers)
    assert r.status_code == 202, r.text
    created: dict[str, Any] = r.json()
    return created


def listed(client: TestClient, who: Person, **params: Any) -> Any:
    return client.get("/api/campaigns", params=params, headers=who.headers)


def test_lists_own_letters_newest_first_with_counts_and_alias(
    client: TestClient, ctx: AppContext, alice: Person, bob: Person
) -> None:
    alias_id = make_alias(client, alice, description="Recruiting")
    make_alias(client, bob)
    first = send(client, alice, "First {{ first }}")
    second = send(client, alice, "Second {{ first }}")
    send(client, bob, "Bob's")
    assert client.post(f"/api/campaigns/{first['id']}/cancel", headers=alice.headers).is_success

    r = listed(client, alice)
    assert r.status_code == 200
    page = r.json()
    assert [c["subject"] for c in page["items"]] == ["Second {{ first }}", "First {{ first }}"]
    assert page["next_before_id"] is None
    newest, oldest = page["items"]
    assert newest["id"] == second["id"]
    assert (newest["alias_id"], newest["alias_description"]) == (alias_id, "Recruiting")
    assert newest["from_address"] == alice.email
    assert (newest["status"], newest["total"], newest["counts"]["queued"]) == ("running", 3, 3)
    assert newest["completed_at"] is None and newest["created_at"]
    assert (oldest["status"], oldest["counts"]["cancelled"]) == ("cancelled", 3)
    assert oldest["completed_at"] is not None
    assert [c["subject"] for c in listed(client, bob).json()["items"]] == ["Bob's"]


def test_pages_with_a_bounded_limit(client: TestClient, alice: Person) -> None:
    make_alias(client, alice)
    ids = [send(client, alice, f"Letter {i}")["id"] for i in range(3)]
    one = listed(client, alice, limit=2).json()
    assert [c["id"] for c in one["items"]] == ids[:0:-1]
    two = listed(client, alice, limit=2, before_id=one["next_before_id"]).json()
    assert [c["id"] for c in two["items"]] == ids[:1]
    assert two["next_before_id"] is None
    for bad in ({"limit": 0}, {"limit": 201}, {"before_id": 0}, {"before_id": 2**63}):
        r = listed(client, alice, **bad)
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["loc"][0] == "query"


def test_admin_sees_own_unless_all_users(client: TestClient, alice: Person, admin: Person) -> None:
    make_alias(client, alice)
    send(client, alice, "Alice's")
    assert listed(client, admin).json()["items"] == []
    everyone = listed(client, admin, all_users="true").json()["items"]
    assert [(c["subject"], c["user_id"]) for c in everyone] == [("Alice's", alice.id)]
    r = listed(client, alice, all_users="true")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "all_users"]


def test_needs_a_token(client: TestClient) -> None:
    assert client.get("/api/campaigns").status_code == 401
