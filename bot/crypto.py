"""Encryption of credentials at rest (Fernet: AES-128-CBC + HMAC-SHA256, from `cryptography`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from bot.config import ConfigError, Settings

log = logging.getLogger(__name__)

KEY_FILE = "secret.key"


class Vault:
    """Encrypts and decrypts small secrets (passwords, OAuth tokens) as JSON."""

    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "MAILROOM_SECRET_KEY is not a valid key: generate one with "
                "`mailroom secret-key` (a url-safe base64 Fernet key)."
            ) from exc
        # A separate key for signatures, derived from the Fernet key: a signature never
        # helps anyone forge or read a stored credential.
        raw = key.encode() if isinstance(key, str) else key
        self._sign_key = hmac.new(
            base64.urlsafe_b64decode(raw), b"mailroom-sign-v1", hashlib.sha256
        ).digest()

    def sign(self, data: bytes) -> str:
        """An HMAC-SHA256 of ``data`` (url-safe base64, no padding)."""
        digest = hmac.new(self._sign_key, data, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def verify(self, data: bytes, signature: str) -> bool:
        """True when ``signature`` is :meth:`sign` of ``data`` (constant-time compare)."""
        return hmac.compare_digest(self.sign(data).encode(), signature.encode("utf-8", "replace"))

    def encrypt(self, data: dict[str, Any]) -> bytes:
        return self._fernet.encrypt(json.dumps(data).encode())

    def decrypt(self, token: bytes) -> dict[str, Any]:
        try:
            value: dict[str, Any] = json.loads(self._fernet.decrypt(token))
        except InvalidToken as exc:
            raise ConfigError(
                "Stored credentials cannot be decrypted with the current MAILROOM_SECRET_KEY: "
                "restore the key they were saved with, or re-enter the account's credentials."
            ) from exc
        return value


def generate_key() -> str:
    return Fernet.generate_key().decode()


def load_vault(settings: Settings) -> Vault:
    """The key comes from MAILROOM_SECRET_KEY; for the embedded SQLite default it is generated
    once into the data folder (with a warning), because losing it loses every credential."""
    if settings.secret_key:
        return Vault(settings.secret_key)
    if not settings.is_sqlite:
        raise ConfigError(
            "MAILROOM_SECRET_KEY is required with PostgreSQL (every replica needs the same key). "
            "Generate one with `mailroom secret-key` and set it in the environment."
        )
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(generate_key())
        log.warning(
            "Generated a new credentials key in %s. Back it up: without it, stored mailbox "
            "passwords and tokens cannot be read. Set MAILROOM_SECRET_KEY to manage it yourself.",
            path,
        )
    return Vault(path.read_text().strip())
