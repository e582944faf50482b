"""What listeners and jobs need, bundled once at start-up and handed down (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.access import AccessControl
from bot.config import Settings
from bot.crypto import Vault
from bot.store.db import SessionFactory


@dataclass
class Services:
    settings: Settings
    session_factory: SessionFactory
    vault: Vault
    access: AccessControl
