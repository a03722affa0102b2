"""API tokens listed, revoked and expiring; admins disable, enable, re-role and reset users
(issue 11, item 5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from sendas.context import AppContext
from sendas.db.models import ApiToken, AuditEvent
from tests.conftest import Person


def test_tokens_are_listed_without_the_token(client: TestClient, alice: Person) -> None:
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    r = client.post(
        "/api/tokens", json={"name": "ci", "expires_at": expires}, headers=alice.headers
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["token"].startswith("sas_") and created["expires_at"] is not None

    r = client.get("/api/tokens", headers=alice.headers)
    assert r.status_code == 200
    listed = r.json()
    assert [t["name"] for t in listed] == ["test", "ci"]
    assert all(set(t) == {"id", "name", "created_at", "expires_at", "last_used_at"} for t in listed)
    assert created["token"] not in r.text and alice.token not in r.text
    # The fixture's token was just used: last_used_at is written.
    assert listed[0]["last_used_at"] is not None and listed[1]["last_used_at"] is None


def test_a_revoked_token_stops_working(client: TestClient, alice: Person, bob: Person) -> None:
    r = client.post("/api/tokens", json={"name": "temp"}, headers=alice.headers)
    made = r.json()
    headers = {"Authorization": f"Bearer {made['token']}"}
    assert client.get("/api/me", headers=headers).status_code == 200

    # Another user's token: 404, and it keeps working.
    assert client.delete(f"/api/tokens/{made['id']}", headers=bob.headers).status_code == 404
    assert client.get("/api/me", headers=headers).status_code == 200

    assert client.delete(f"/api/tokens/{made['id']}", headers=alice.headers).status_code == 204
    assert client.get("/api/me", headers=headers).status_code == 401
    assert client.delete(f"/api/tokens/{made['id']}", headers=alice.headers).status_code == 404
    assert client.delete("/api/tokens/999999", headers=alice.headers).status_code == 404


def test_an_expired_token_stops_working(client: TestClient, ctx: AppContext, alice: Person) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    made = client.post("/api/tokens", json={"expires_at": soon}, headers=alice.headers).json()
    headers = {"Authorization": f"Bearer {made['token']}"}
    assert client.get("/api/me", headers=headers).status_code == 200
    with ctx.db.write() as s:  # an hour later
        s.execute(
            update(ApiToken)
            .where(ApiToken.id == made["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert client.get("/api/me", headers=headers).status_code == 401


def test_token_expiry_must_be_a_future_time_with_a_zone(client: TestClient, alice: Person) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for value, problem in (
        (past, "in the future"),
        ("2099-01-01T00:00:00", "time zone"),
        ("soon", "date and time"),
    ):
        r = client.post("/api/tokens", json={"expires_at": value}, headers=alice.headers)
        assert r.status_code == 422
        assert [e["loc"][-1] for e in r.json()["detail"]] == ["expires_at"]
        assert problem in r.json()["detail"][0]["msg"]
    assert len(client.get("/api/tokens", headers=alice.headers).json()) == 1  # nothing written


def test_only_admins_change_users(client: TestClient, alice: Person, bob: Person) -> None:
    r = client.patch(f"/api/users/{bob.id}", json={"disabled": True}, headers=alice.headers)
    assert r.status_code == 403
    assert client.get("/api/me", headers=bob.headers).status_code == 200


def test_admin_changes_role_and_unknown_user_is_404(
    client: TestClient, ctx: AppContext, admin: Person, alice: Person
) -> None:
    r = client.patch(f"/api/users/{alice.id}", json={"role": "admin"}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["role"] == "admin"
    assert client.get("/api/users", headers=alice.headers).status_code == 200
    r = client.patch("/api/users/424242", json={"role": "admin"}, headers=admin.headers)
    assert r.status_code == 404
    r = client.patch(f"/api/users/{alice.id}", json={"role": "owner"}, headers=admin.headers)
    assert r.status_code == 422
    with ctx.db.read() as s:
        actions = [e.action for e in s.query(AuditEvent).order_by(AuditEvent.id)]
    assert "user.role" in actions


def test_the_last_active_admin_cannot_be_disabled_or_demoted(
    client: TestClient, admin: Person, alice: Person
) -> None:
    for body, field in (({"disabled": True}, "disabled"), ({"role": "user"}, "role")):
        r = client.patch(f"/api/users/{admin.id}", json=body, headers=admin.headers)
        assert r.status_code == 422, r.text
        assert [e["loc"][-1] for e in r.json()["detail"]] == [field]
    # With a second admin, the first may step down.
    client.patch(f"/api/users/{alice.id}", json={"role": "admin"}, headers=admin.headers)
    r = client.patch(f"/api/users/{admin.id}", json={"role": "user"}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["role"] == "user"
    # Now alice is the last one.
    r = client.patch(f"/api/users/{alice.id}", json={"disabled": True}, headers=alice.headers)
    assert r.status_code == 422


def test_a_patch_that_fails_writes_nothing(
    client: TestClient, admin: Person, alice: Person
) -> None:
    r = client.patch(
        f"/api/users/{admin.id}",
        json={"disabled": True, "password": "a new password"},
        headers=admin.headers,
    )
    assert r.status_code == 422
    r = client.patch(f"/api/users/{alice.id}", json={"password": "short"}, headers=admin.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "password"
    assert client.get("/api/me", headers=admin.headers).json()["disabled"] is False
