"""Errors every provider raises. Adapters translate library errors into these at the boundary.

The sync engine decides what to do by class, never by parsing text:

* :class:`AuthError`: stop syncing the account and ask an admin to re-enter credentials.
* :class:`TransientError`: retry later with backoff; nothing is wrong with the settings.
* :class:`ConfigError`: a person must fix the settings (host, port, security, folder).
* :class:`NotSupported`: the server lacks a capability; pick another code path.
* :class:`ProtocolError`: the server answered something we cannot use; retry later, and
  report it if it persists.
* :class:`MessageRejected`: the SMTP server refused the message or a recipient; resending
  the same message will fail the same way.

Every message says what to do. None of them contains a password or a message body.
"""

from __future__ import annotations


class ProviderError(Exception):
    """Base class for everything a provider raises on purpose."""


class AuthError(ProviderError):
    """The server refused the credentials, or the account needs re-authorisation.

    Raised on IMAP ``LOGIN``/``AUTHENTICATE`` NO responses and SMTP 535/534 replies.
    """


class TransientError(ProviderError):
    """Retry later: a timeout, a refused or reset connection, a busy server, SMTP 4xx."""


class ConfigError(ProviderError):
    """A person must change the settings: unknown host, TLS failure, wrong port type,
    missing folder, or a server that does not offer what the settings ask for."""


class TlsError(ConfigError):
    """The TLS handshake failed: untrusted certificate, or a port that does not speak TLS."""


class FolderNotFound(ConfigError):
    """The named folder does not exist on the server (renamed or deleted)."""

    def __init__(self, folder: str, message: str | None = None) -> None:
        self.folder = folder
        super().__init__(
            message
            or f"The folder {folder!r} does not exist on the mail server: pick another "
            "folder in the account settings, or create it in your mail client."
        )


class NotSupported(ProviderError):
    """The server lacks a capability the call needs (e.g. CONDSTORE, UIDPLUS, IDLE).

    Callers should branch on ``provider.capabilities`` first; this is the safety net.
    """


class ProtocolError(ProviderError):
    """The server sent a response that is malformed or unexpected for the command."""


class MessageRejected(ProviderError):
    """The SMTP server permanently refused the message or some recipients (5xx).

    ``refused`` maps each refused recipient to ``(code, server text)``. ``delivered_to``
    lists recipients the server did accept: when it is not empty the message WAS sent to
    them, so it must not be sent again.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        server_text: str = "",
        refused: dict[str, tuple[int, str]] | None = None,
        delivered_to: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.server_text = server_text
        self.refused = dict(refused or {})
        self.delivered_to = delivered_to
