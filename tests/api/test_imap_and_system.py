"""IMAP accounts and the database outgoing settings over the API."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.test_aliases import create
from tests.conftest import Person


def test_imap_account_crud_and_port_defaults(client: TestClient, alice: Person):
    r = client.post(
        "/api/imap-accounts",
        json={
            "imap_server": "imap.example.com",
            "username": "alice",
            "password": "imap-pw-1",
            "sent_folder": "Sent Items",
        },
        headers=alice.headers,
    )
    assert r.status_code == 201, r.text
    acc = r.json()
    assert acc["imap_server"] == "imap.example.com:993"
    assert acc["password_set"] is True and "password" not in acc
    assert acc["sent_folder"] == "Sent Items"
    # Port 143 with STARTTLS is another place to send the password: it must be typed again.
    change = {"tls": "starttls", "imap_server": "imap.example.com"}
    r = client.patch(f"/api/imap-accounts/{acc['id']}", json=change, headers=alice.headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "password"]
    change["password"] = "imap-pw-1"
    r = client.patch(f"/api/imap-accounts/{acc['id']}", json=change, headers=alice.headers)
    assert r.json()["imap_server"] == "imap.example.com:143"
    assert r.json()["password_set"] is True


def test_imap_account_in_use_cannot_be_deleted(client: TestClient, alice: Person):
    acc = client.post(
        "/api/imap-accounts",
        json={"imap_server": "imap.example.com:993", "username": "alice", "password": "imap-pw-1"},
        headers=alice.headers,
    ).json()
    create(client, alice, description="Sales", imap_account_id=acc["id"])
    r = client.delete(f"/api/imap-accounts/{acc['id']}", headers=alice.headers)
    assert r.status_code == 409
    assert "Sales" in r.json()["detail"] and r.json()["blockers"] == ["Sales"]
    assert client.get(f"/api/imap-accounts/{acc['id']}", headers=alice.headers).status_code == 200


def test_imap_bad_input(client: TestClient, alice: Person):
    r = client.post(
        "/api/imap-accounts",
        json={"imap_server": "imap.example.com:0", "username": "a"},
        headers=alice.headers,
    )
    assert r.status_code == 422
    assert client.get("/api/imap-accounts", headers=alice.headers).json() == []


def test_system_outgoing_roundtrip(client: TestClient, admin: Person):
    r = client.get("/api/system/outgoing", headers=admin.headers)
    assert r.status_code == 200 and r.json()["configured"] is False
    body = {
        "from_address": "noreply@example.com",
        "from_name": "Example CRM",
        "smtp_server": "smtp.example.com",
        "tls": "starttls",
        "smtp_username": "noreply",
        "smtp_password": "sys-pw-123",
        "delay_ms": 100,
    }
    r = client.put("/api/system/outgoing", json=body, headers=admin.headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["configured"] is True and out["smtp_server"] == "smtp.example.com:587"
    assert out["password_set"] is True and "sys-pw-123" not in r.text
    r = client.put("/api/system/outgoing", json={"from_name": "CRM"}, headers=admin.headers)
    assert r.json()["password_set"] is True and r.json()["from_address"] == "noreply@example.com"


def test_system_outgoing_bad_input_writes_nothing(client: TestClient, admin: Person):
    r = client.put(
        "/api/system/outgoing",
        json={"from_address": "bad", "delay_ms": 10**9},
        headers=admin.headers,
    )
    assert r.status_code == 422
    assert client.get("/api/system/outgoing", headers=admin.headers).json()["from_address"] == ""
