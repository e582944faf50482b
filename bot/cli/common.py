"""Helpers shared by CLI commands: settings, logging, a migrated database."""

from __future__ import annotations

import ctypes
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


# glibc's mallopt() parameter for the size from which malloc serves a block with its own mmap.
_M_MMAP_THRESHOLD = -3
# Fixed at glibc's starting value: 128 KiB.
MMAP_THRESHOLD = 128 * 1024


def bound_heap() -> bool:
    """Keep a bulk run's memory flat: blocks of 128 KiB and more (a message with an
    attachment, a fetch batch on its way to the parse worker) get their own mapping and go
    back to the system when freed.

    Without this, glibc raises that threshold to the size of each big block freed (up to
    32 MiB): after the first batch of a sync every message is carved from the heap and the
    arena of the thread that fetched it, and the holes they leave made a 20,000-message
    `sync --once` climb through the run (sampled: 121 -> 147 MB; with this it stays at
    117-128 MB, issue 19). True if set (glibc only)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): their malloc, their rules
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
