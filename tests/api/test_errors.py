"""422 answers name each bad field in plain words, never in validator jargon."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_aliases import GOOD
from tests.conftest import Person


def problems(r: Any) -> dict[str, tuple[str, str]]:
    assert r.status_code == 422, r.text
    return {".".join(map(str, e["loc"])): (e["msg"], e["type"]) for e in r.json()["detail"]}


def test_delay_over_the_limit(client: TestClient, alice: Person):
    r = client.post("/api/aliases", json={**GOOD, "delay_ms": 3_600_001}, headers=alice.headers)
    assert problems(r) == {"body.delay_ms": ("must be at most 3,600,000", "less_than_equal")}
    assert client.get("/api/aliases", headers=alice.headers).json() == []


def test_password_too_short(client: TestClient, admin: Person):
    body = {"email": "c@example.com", "name": "C", "password": "seven77"}
    r = client.post("/api/users", json=body, headers=admin.headers)
    assert problems(r) == {"body.password": ("must have at least 8 characters", "too_short")}
    assert "seven77" not in r.text


def test_unknown_field_bad_choice_and_broken_json(client: TestClient, alice: Person):
    r = client.post(
        "/api/aliases", json={**GOOD, "tls": "ssl", "colour": "red"}, headers=alice.headers
    )
    assert problems(r) == {
        "body.tls": ("must be one of: auto, implicit, starttls, none", "literal_error"),
        "body.colour": ("is not a known field", "extra_forbidden"),
    }
    r = client.post(
        "/api/aliases",
        content=b'{"description": ',
        headers={**alice.headers, "content-type": "application/json"},
    )
    assert [e["msg"] for e in r.json()["detail"]] == ["is not valid JSON"]


def test_query_numbers(client: TestClient, alice: Person):
    r = client.get("/api/messages?limit=many", headers=alice.headers)
    assert problems(r) == {"query.limit": ("must be a whole number", "int_parsing")}
