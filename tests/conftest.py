"""Shared fixtures. Real servers live in tests/servers/ and are loaded as plugins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sendas.api import create_app
from sendas.config import Settings
from sendas.context import AppContext
from sendas.schemas import UserCreate
from sendas.services import users as user_service
from sendas.services.common import Actor

# The test servers listen on loopback, which the outbound policy refuses unless allowed. Set
# at import, before any Settings() is built, so that the CLI, `sendas serve` and the worker
# subprocesses (which inherit os.environ) see it too. Tests of the refusal override it.
os.environ["SENDAS_OUTBOUND_ALLOW"] = "127.0.0.0/8,::1/128"
# The bounce watch (sendas.outbox.bounces) would log in to every linked Dovecot INBOX from
# every worker a test runs; tests/bounces turns it on where it is under test.
os.environ.setdefault("SENDAS_BOUNCE_SCAN", "false")

pytest_plugins = [
    "tests.servers.smtpd",
    "tests.servers.postgres",
    "tests.servers.oauth_server",  # before dovecot, which imports it
    "tests.servers.dovecot",
    "tests.servers.postfix",
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for one test: SQLite in tmp_path, a key file, no embedded worker."""
    return Settings(data_dir=tmp_path / "data", embedded_worker=False, smtp_timeout=3.0)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[AppContext]:
    context = AppContext.build(settings)
    yield context
    context.close()


@pytest.fixture
def client(ctx: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(ctx.settings, ctx=ctx)) as c:
        yield c


@dataclass
class Person:
    id: int
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_person(ctx: AppContext, email: str, *, admin: bool = False) -> Person:
    with ctx.db.write() as s:
        user = user_service.create_user(
            s,
            UserCreate(
                email=email,
                name=email.split("@")[0].title(),
                role="admin" if admin else "user",
                password=SecretStr("correct horse battery"),
            ),
        )
        _, token = user_service.create_token(s, user, "test")
        return Person(user.id, user.email, token)


def make_actor(ctx: AppContext, email: str) -> Actor:
    """A new person (not an admin) as the services see them."""
    person = make_person(ctx, email)
    return Actor(person.id, person.email, False)


@pytest.fixture
def admin(ctx: AppContext) -> Person:
    return make_person(ctx, "admin@example.com", admin=True)


@pytest.fixture
def alice(ctx: AppContext) -> Person:
    return make_person(ctx, "alice@example.com")


@pytest.fixture
def bob(ctx: AppContext) -> Person:
    return make_person(ctx, "bob@example.com")


@pytest.fixture
def fernet_key() -> str:
    return Fernet.generate_key().decode()
