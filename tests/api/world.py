"""A small world for the access proofs: users A and B, an admin, and one of each of A's
objects (IMAP account, alias, message, campaign, API token), made through the API.

The route matrix and the schemathesis run both start from it. A new kind of object gets a
line in ``Objects`` and in ``make_objects``, and its path parameter a line in ``PATH_VALUES``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from sendas.context import AppContext
from tests.conftest import Person, make_person
from tests.servers.process import free_port

# The password every person of the world logs in with (tests.conftest.make_person).
LOGIN_PASSWORD = "correct horse battery"
SMTP_PASSWORD = "world-smtp-Pa55"
IMAP_PASSWORD = "world-imap-Pa55"


@dataclass
class Objects:
    """One of each of A's objects (and A's own user id)."""

    user_id: int
    alias_id: int
    account_id: int
    message_id: int
    campaign_id: int
    token_id: int
    suppression_id: int


@dataclass
class World:
    a: Person
    b: Person
    admin: Person
    objects: Objects

    def people(self) -> dict[str, Person]:
        return {"A": self.a, "B": self.b, "admin": self.admin}


_SERIAL = itertools.count(1)


def _ok(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def build_world(client: TestClient, ctx: AppContext) -> World:
    """The three people and A's objects."""
    admin = make_person(ctx, "admin@example.com", admin=True)
    a = make_person(ctx, "alice@example.com")
    b = make_person(ctx, "bob@example.com")
    return World(a=a, b=b, admin=admin, objects=make_objects(client, a))


def make_objects(client: TestClient, a: Person) -> Objects:
    """One of each of A's objects, made through the API. Servers point at a closed loopback
    port, so a test of them fails at once and never leaves this machine."""
    closed = free_port()
    n = next(_SERIAL)
    account = _ok(
        client.post(
            "/api/imap-accounts",
            json={
                "imap_server": f"127.0.0.1:{closed}",
                "username": "alice",
                "password": IMAP_PASSWORD,
            },
            headers=a.headers,
        ),
        201,
    )
    alias = _ok(
        client.post(
            "/api/aliases",
            json={
                "description": f"Work {n}",
                "alias_name": "Alice Example",
                "from_address": a.email,
                "smtp_server": f"127.0.0.1:{closed}",
                "tls": "none",
                "smtp_username": a.email,
                "smtp_password": SMTP_PASSWORD,
                "imap_account_id": account["id"],
            },
            headers=a.headers,
        ),
        201,
    )
    message = _ok(
        client.post(
            "/api/messages",
            json={
                "alias_id": alias["id"],
                "to": ["ann@example.org"],
                "subject": "Hello",
                "text": "Hi Ann",
                "html": "<p>Hi Ann</p>",
                "attachments": [
                    {"filename": "a.txt", "content_type": "text/plain", "content_base64": "aGk="}
                ],
            },
            headers=a.headers,
        ),
        202,
    )
    campaign = _ok(
        client.post(
            "/api/campaigns",
            json={
                "alias_id": alias["id"],
                "subject": "Hello {{ first }}",
                "text": "Dear {{ first }}",
                "recipients": [
                    {"email": "ben@example.org", "fields": {"first": "Ben"}},
                    {"email": "cat@example.org", "fields": {"first": "Cat"}},
                ],
            },
            headers=a.headers,
        ),
        202,
    )
    token = _ok(client.post("/api/tokens", json={"name": "world"}, headers=a.headers), 201)
    suppression = _ok(
        client.post(
            "/api/suppressions", json={"address": f"gone{n}@example.org"}, headers=a.headers
        ),
        201,
    )
    return Objects(
        user_id=a.id,
        alias_id=alias["id"],
        account_id=account["id"],
        message_id=message["id"],
        campaign_id=campaign["id"],
        token_id=token["id"],
        suppression_id=suppression["id"],
    )


# Path parameter -> its value in the world (A's object). A route with a parameter missing
# here fails the route matrix until it gets a line. A name that means different objects on
# different routes (a bare ``{id}``) gets its value per path in PATH_VALUES_BY_ROUTE.
PATH_VALUES: dict[str, Callable[[Objects], object]] = {
    "alias_id": lambda o: o.alias_id,
    "account_id": lambda o: o.account_id,
    "message_id": lambda o: o.message_id,
    "campaign_id": lambda o: o.campaign_id,
    "token_id": lambda o: o.token_id,
    "suppression_id": lambda o: o.suppression_id,
    "provider": lambda o: "google",
    "user_id": lambda o: o.user_id,
    "index": lambda o: 0,
    "topic": lambda o: "gmail",
    "action": lambda o: "pause",
}

# Path pattern -> {parameter: value}, before PATH_VALUES; e.g.
# "/api/tokens/{id}": {"id": lambda o: o.token_id}, "/api/users/{id}": {"id": lambda o: o.user_id}
PATH_VALUES_BY_ROUTE: dict[str, dict[str, Callable[[Objects], object]]] = {}


def path_value(path: str, name: str, objects: Objects) -> object | None:
    """The value of path parameter ``name`` of ``path`` in the world; None if it has none."""
    by_route = PATH_VALUES_BY_ROUTE.get(path, {})
    if name in by_route:
        return by_route[name](objects)
    if name in PATH_VALUES:
        return PATH_VALUES[name](objects)
    return None
