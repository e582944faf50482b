"""Mailbox providers: one module per protocol, returning plain data, never touching the store.

``imapclient``, ``imaplib`` and ``smtplib`` are imported only in this package.
"""

from bot.providers.base import MailProvider
from bot.providers.errors import (
    AuthError,
    ConfigError,
    FolderNotFound,
    MessageRejected,
    NotSupported,
    ProtocolError,
    ProviderError,
    TlsError,
    TransientError,
)
from bot.providers.types import (
    ConnectionReport,
    FetchedMessage,
    FlagChange,
    FolderInfo,
    FolderStatus,
    ImapSettings,
    Security,
    SmtpSettings,
)

__all__ = [
    "AuthError",
    "ConfigError",
    "ConnectionReport",
    "FetchedMessage",
    "FlagChange",
    "FolderInfo",
    "FolderNotFound",
    "FolderStatus",
    "ImapSettings",
    "MailProvider",
    "MessageRejected",
    "NotSupported",
    "ProtocolError",
    "ProviderError",
    "Security",
    "SmtpSettings",
    "TlsError",
    "TransientError",
]
