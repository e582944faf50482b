"""Helpers shared by CLI commands: settings, logging, a migrated database."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.config import Settings, load_settings

if TYPE_CHECKING:
    from bot.store.db import SessionFactory


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=getattr(logging, settings.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def settings_and_db(*, upgrade: bool = True) -> tuple[Settings, SessionFactory]:
    from bot.store import migrate
    from bot.store.db import make_engine, make_session_factory

    settings = load_settings()
    setup_logging(settings)
    engine = make_engine(settings.database_url)
    if upgrade:
        migrate.upgrade(engine)
    return settings, make_session_factory(engine)
