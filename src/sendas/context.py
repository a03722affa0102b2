"""What every entry point (API, web, CLI, worker) needs: settings, database, secret box."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sendas.config import Settings
from sendas.db.engine import Database, make_engine
from sendas.db.migrate import upgrade
from sendas.db.wake import WAKE_FILE, touch_on_commit
from sendas.private_files import private_dir
from sendas.secrets import SecretBox, make_secret_box


@dataclass
class AppContext:
    settings: Settings
    db: Database
    secrets: SecretBox

    @classmethod
    def build(cls, settings: Settings, *, migrate: bool = True) -> AppContext:
        private_dir(settings.data_dir)
        engine = make_engine(settings.effective_database_url)
        if migrate:
            upgrade(engine)
        db = Database(engine)
        # Workers sharing this data folder poll at once when mail was queued (sendas.db.wake).
        touch_on_commit(db.write_sessions, settings.data_dir / WAKE_FILE)
        return cls(settings, db, make_secret_box(settings.secret_key, settings.key_file))

    def close(self) -> None:
        self.db.dispose()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
