"""What the sync engine needs from any mailbox provider (IMAP now, Gmail and Graph later).

The engine branches on :attr:`MailProvider.capabilities`, not on caught exceptions
(``NotSupported`` is only the safety net). Every method may raise the errors of
:mod:`bot.providers.errors`; none touches the store, and all return plain frozen
dataclasses from :mod:`bot.providers.types`.

Folders are named by provider-specific strings (IMAP mailbox names; Gmail label ids and
Graph folder ids will fit the same slot). Message keys are per-folder integers for IMAP,
valid only together with the folder's ``uidvalidity``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, runtime_checkable

from bot.providers.types import FetchedMessage, FlagChange, FolderInfo, FolderStatus


@runtime_checkable
class MailProvider(Protocol):
    """One live connection to one mailbox.

    Sync loop, per folder (IMAP terms):

    1. ``status = select(folder)``; if ``status.uidvalidity`` differs from the stored one,
       forget the folder's UID map and resync from ``after_uid=0`` (dedupe by hash and
       Message-ID, so nothing is posted twice).
    2. For each batch of ``fetch_new(folder, last_uid)``: store the messages and advance
       ``last_uid`` in the same transaction.
    3. Flags: with ``"CONDSTORE"`` in ``capabilities``, ``changed_flags(folder, modseq)``
       then store ``status.highestmodseq``; otherwise ``all_flags(folder, known_uids)``
       now and then.
    4. Expunges: ``known - list_uids(folder)``.
    5. Wait: ``idle_wait(folder, timeout)`` if ``"IDLE"`` is in ``capabilities``, else poll.
    """

    capabilities: frozenset[str]

    def connect(self) -> None:
        """Open and authenticate. AuthError, ConfigError or TransientError on failure."""

    def close(self) -> None:
        """Release the connection; never raises."""

    def __enter__(self) -> MailProvider: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def list_folders(self) -> list[FolderInfo]:
        """Every folder, with its role (inbox, sent, archive, trash, drafts, junk, all)."""
        ...

    def folder_for_role(self, role: str, *, create: bool = False) -> str | None:
        """The folder name playing ``role``; creates it when asked and missing."""
        ...

    def select(self, folder: str) -> FolderStatus:
        """Open ``folder`` and report its cursor state."""
        ...

    def fetch_new(
        self,
        folder: str,
        after_uid: int,
        *,
        batch_size: int = 500,
        max_size: int = 25 * 1024 * 1024,
        max_batch_bytes: int = 64 * 1024 * 1024,
    ) -> Iterator[list[FetchedMessage]]:
        """Messages after ``after_uid`` in ascending batches (bounded in count and in bytes),
        read without marking seen."""
        ...

    def changed_flags(self, folder: str, since_modseq: int) -> list[FlagChange]:
        """Flags changed since ``since_modseq`` (needs CONDSTORE)."""
        ...

    def all_flags(self, folder: str, uids: Sequence[int] | None = None) -> list[FlagChange]:
        """Current flags of ``uids`` or of every message (the fallback without CONDSTORE)."""
        ...

    def list_uids(self, folder: str) -> set[int]:
        """Every message key in ``folder``; the difference to the stored set is expunged."""
        ...

    def set_seen(self, folder: str, uids: Sequence[int], seen: bool) -> None:
        """Mark messages read or unread on the server."""
        ...

    def move(self, folder: str, uids: Sequence[int], dest: str) -> dict[int, int]:
        """Move messages; returns old→new keys when the server reports them."""
        ...

    def append(
        self,
        folder: str,
        raw: bytes,
        *,
        flags: Sequence[str] = ("\\Seen",),
        when: datetime | None = None,
    ) -> int | None:
        """Store a message (our sent copy); the new key when known."""
        ...

    def find_message_id(self, folder: str, message_id: str) -> list[int]:
        """Keys of messages in ``folder`` with this Message-ID (to avoid double APPENDs)."""
        ...

    def idle_wait(self, folder: str, timeout: float) -> bool:
        """Block until ``folder`` changes (True) or ``timeout`` seconds pass (False)."""
        ...
