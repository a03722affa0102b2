"""Migrations on SQLite and PostgreSQL: up from empty, down to base, up again, models match."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import IntegrityError

from sendas.db.engine import Database, make_engine
from sendas.db.migrate import alembic_config, current_revision, downgrade, upgrade
from sendas.db.models import Alias, Base, User

MODEL_TABLES = set(Base.metadata.tables)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database: a new SQLite file, or a new database on the test PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'sendas.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def head_revision(engine: Engine) -> str:
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def test_upgrade_downgrade_upgrade(engine: Engine) -> None:
    assert tables(engine) == set()

    upgrade(engine)
    assert tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision(engine)

    downgrade(engine, "base")
    assert tables(engine) == {"alembic_version"}
    assert current_revision(engine) is None

    upgrade(engine)
    assert tables(engine) == MODEL_TABLES | {"alembic_version"}
    assert current_revision(engine) == head_revision(engine)


def test_sqlite_file_is_in_wal_mode(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("wal") / "sendas.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    # A plain connection, not one of ours: WAL must be a property of the file itself.
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()


def test_models_match_migrations(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], "models and migrations differ: write a migration"


def test_database_allows_one_default_alias_per_user(engine: Engine) -> None:
    upgrade(engine)
    db = Database(engine)
    with db.write() as s:
        ann = User(email="ann@example.com", name="Ann")
        bob = User(email="bob@example.com", name="Bob")
        s.add_all([ann, bob])
        s.flush()
        s.add_all(
            [
                alias(ann, "Work", is_default=True),
                alias(ann, "Home", is_default=False),
                alias(bob, "Work", is_default=True),  # another user's default is independent
            ]
        )
    ann_id, bob_id = ann.id, bob.id

    with pytest.raises(IntegrityError), db.write() as s:
        s.add(alias(s.get_one(User, ann_id), "Sales", is_default=True))
        s.flush()

    with db.read() as s:
        defaults = {
            (a.user_id, a.description) for a in s.query(Alias).filter(Alias.is_default.is_(True))
        }
    assert defaults == {(ann_id, "Work"), (bob_id, "Work")}


def alias(user: User, description: str, *, is_default: bool) -> Alias:
    return Alias(
        user_id=user.id,
        description=description,
        description_key=description.casefold(),
        from_address=f"{description.lower()}@example.com",
        is_default=is_default,
    )
