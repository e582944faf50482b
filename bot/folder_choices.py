"""What an admin can choose to sync, per provider, with readable names: IMAP folders, Gmail
labels, Microsoft 365 mail folders. A choice is ``(text shown, value stored in
Account.folders)``.

Stored values are what each sync understands: IMAP folder names; Gmail label ids plus
``ARCHIVE`` (archived mail, bot/sync/gmail_sync.py ``gmail_label_chosen``); Graph well-known
names (``inbox``, ``sentitems``, ``archive``) or folder ids.

:func:`read_choices` talks to the provider (network): handlers call it after the ack.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.providers.gmail import GmailLabel
    from bot.providers.graph import GraphFolder
    from bot.services import Services
    from bot.store.models import Account

log = logging.getLogger(__name__)

Choice = tuple[str, str]

GMAIL_WELL_KNOWN: tuple[Choice, ...] = (
    ("Inbox", "INBOX"),
    ("Sent", "SENT"),
    ("Archive (All Mail not in Inbox)", "ARCHIVE"),
)
GRAPH_WELL_KNOWN: tuple[Choice, ...] = (
    ("Inbox", "inbox"),
    ("Sent Items", "sentitems"),
    ("Archive", "archive"),
)
WELL_KNOWN = {"gmail": GMAIL_WELL_KNOWN, "graph": GRAPH_WELL_KNOWN}


def well_known_choices(provider: str) -> tuple[Choice, ...]:
    """What can be offered before sign-in (no API to ask yet)."""
    return WELL_KNOWN.get(provider, ())


def remember_names(
    config: Mapping[str, Any] | None,
    folders: Sequence[str],
    names: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """``Account.config`` with ``folder_names`` (value → readable name) for the chosen folders:
    the App Home shows "Support", not "Label_12". A name not given now is kept from before."""
    out = dict(config or {})
    given, before = dict(names), dict(out.get("folder_names") or {})
    kept = {f: given.get(f) or before.get(f) for f in folders if given.get(f) or before.get(f)}
    if kept:
        out["folder_names"] = kept
    else:
        out.pop("folder_names", None)
    return out


def readable_folders(
    provider: str, folders: Sequence[str] | None, config: Mapping[str, Any] | None
) -> tuple[str, ...]:
    """The account's chosen folders as the App Home shows them."""
    names = dict((config or {}).get("folder_names") or {})
    known = {value.casefold(): text for text, value in WELL_KNOWN.get(provider, ())}
    return tuple(names.get(f) or known.get(f.casefold()) or f for f in folders or ())


def gmail_choices(labels: Sequence[GmailLabel]) -> list[Choice]:
    """Inbox, Sent, Archive, then the user's own labels by name. Other system labels
    (UNREAD, STARRED, CATEGORY_…) are states or tabs, not places mail is filed."""
    user = sorted((x for x in labels if x.type == "user"), key=lambda x: x.name.casefold())
    return [*GMAIL_WELL_KNOWN, *((x.name, x.id) for x in user)]


def graph_choices(folders: Sequence[GraphFolder]) -> list[Choice]:
    """Inbox, Sent Items, Archive by well-known name (what the sync uses for them), then the
    other folders by display name with their ids."""
    return [*GRAPH_WELL_KNOWN, *((f.name, f.id) for f in folders if f.well_known is None)]


def _imap_names(services: Services, account: Account) -> list[Choice]:
    from bot.accounts import imap_settings, passwords
    from bot.providers.imap import ImapProvider

    settings = imap_settings(account, timeout=15.0)
    secret = passwords(services, account)["imap_password"]
    try:
        with ImapProvider(settings, secret) as provider:
            return [(f.name, f.name) for f in provider.list_folders()]
    except OSError as exc:
        raise OSError(f"cannot reach {settings.host}: {exc}") from exc


def read_choices(
    services: Services, account_id: int
) -> tuple[str, list[Choice] | None, str | None]:
    """(provider, choices, None) or (provider, None, why they could not be read)."""
    from bot.providers.errors import ProviderError
    from bot.store.db import read_scope
    from bot.store.models import Account, Provider

    with read_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        if account is None:
            return "imap", None, "the account no longer exists"
        session.expunge(account)
    provider = account.provider.value
    try:
        if account.provider == Provider.GMAIL:
            from bot.sync.api_sync import gmail_client

            return provider, gmail_choices(gmail_client(services, account).labels()), None
        if account.provider == Provider.GRAPH:
            from bot.sync.api_sync import graph_client

            with graph_client(services, account) as graph:
                return provider, graph_choices(graph.list_folders()), None
        return provider, _imap_names(services, account), None
    except (ProviderError, OSError) as exc:
        return provider, None, str(exc)
    except Exception as exc:  # settings missing or damaged: the modal still opens, saying why
        log.warning("folder list of account %s not read: %s", account_id, type(exc).__name__)
        return provider, None, str(exc)
