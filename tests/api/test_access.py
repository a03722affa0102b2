"""Who may see and change what: user A, user B, admin, no token."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.test_aliases import GOOD, create
from tests.conftest import Person


def test_no_token_is_401(client: TestClient):
    for method, url in [
        ("GET", "/api/me"),
        ("GET", "/api/aliases"),
        ("POST", "/api/aliases"),
        ("GET", "/api/imap-accounts"),
        ("GET", "/api/system/outgoing"),
        ("GET", "/api/users"),
        ("GET", "/api/audit"),
    ]:
        r = client.request(method, url, json={})
        assert r.status_code == 401, (method, url)
    r = client.get("/api/aliases", headers={"Authorization": "Bearer sas_wrong"})
    assert r.status_code == 401


def test_me(client: TestClient, alice: Person):
    r = client.get("/api/me", headers=alice.headers)
    assert r.json()["email"] == "alice@example.com" and r.json()["role"] == "user"


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_other_users_alias_is_404(
    client: TestClient, alice: Person, bob: Person, admin: Person, method: str
):
    a = create(client, alice)
    for intruder in (bob, admin):
        r = client.request(
            method, f"/api/aliases/{a['id']}", json={"alias_name": "x"}, headers=intruder.headers
        )
        assert r.status_code == 404
    assert (
        client.get(f"/api/aliases/{a['id']}", headers=alice.headers).json()["alias_name"]
        == GOOD["alias_name"]
    )
    assert client.get("/api/aliases", headers=bob.headers).json() == []


def test_missing_alias_is_404_the_same(client: TestClient, alice: Person):
    assert client.get("/api/aliases/9999", headers=alice.headers).status_code == 404


def test_other_users_imap_account_is_404(client: TestClient, alice: Person, bob: Person):
    acc = client.post(
        "/api/imap-accounts",
        json={"imap_server": "imap.example.com", "username": "a", "password": "pw-12345"},
        headers=alice.headers,
    ).json()
    for method in ("GET", "PATCH", "DELETE"):
        assert (
            client.request(
                method, f"/api/imap-accounts/{acc['id']}", json={}, headers=bob.headers
            ).status_code
            == 404
        )


def test_admin_only_endpoints(client: TestClient, alice: Person, admin: Person):
    assert client.get("/api/users", headers=alice.headers).status_code == 403
    assert (
        client.post(
            "/api/users", json={"email": "c@example.com", "name": "C"}, headers=alice.headers
        ).status_code
        == 403
    )
    assert client.get("/api/system/outgoing", headers=alice.headers).status_code == 403
    assert client.put("/api/system/outgoing", json={}, headers=alice.headers).status_code == 403
    assert client.get("/api/users", headers=admin.headers).status_code == 200
    assert client.get("/api/system/outgoing", headers=admin.headers).status_code == 200


def test_admin_creates_user_and_user_gets_token(client: TestClient, admin: Person):
    r = client.post(
        "/api/users",
        json={"email": "Carol@Example.com", "name": "Carol", "password": "long-enough-pw"},
        headers=admin.headers,
    )
    assert r.status_code == 201 and r.json()["email"] == "carol@example.com"
    assert "password" not in r.json()
    r = client.post(
        "/api/users", json={"email": "carol@example.com", "name": "Carol 2"}, headers=admin.headers
    )
    assert r.status_code == 422


def test_token_creation_for_logged_in_user(client: TestClient, alice: Person):
    r = client.post("/api/tokens", json={"name": "script"}, headers=alice.headers)
    assert r.status_code == 201
    token = r.json()["token"]
    assert (
        client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).json()["email"]
        == alice.email
    )


def test_audit_visibility(client: TestClient, alice: Person, bob: Person, admin: Person):
    create(client, alice)
    create(client, bob, description="Bob's")
    mine = client.get("/api/audit", headers=alice.headers).json()
    assert mine and all(e["owner_id"] == alice.id for e in mine)
    assert {e["owner_id"] for e in client.get("/api/audit", headers=admin.headers).json()} >= {
        alice.id,
        bob.id,
    }


def test_audit_never_holds_a_secret(client: TestClient, alice: Person, admin: Person):
    create(client, alice)
    assert "s3cret-Pa55" not in client.get("/api/audit", headers=admin.headers).text
