"""Gmail and Microsoft 365 accounts: the sync entry point, and a facade over the modules.

The API side has the same shape as the IMAP side, one job per module:

* ``api_accounts``  — creating accounts, storing tokens, building the API clients;
* ``api_store``     — store steps shared by sync, write-back and send (locations, ingest);
* ``gmail_sync``    — Gmail's history / full sync;
* ``graph_sync``    — Microsoft 365's per-folder delta rounds;
* ``api_writeback`` — read flags and moves from the outbox;
* ``api_send``      — sending (the provider files the Sent copy).

Adding a provider means one sync module here and one adapter in bot/providers. This module
keeps :func:`sync_api_account` (which picks the sync module) and re-exports the names other
modules and tests import from ``bot.sync.api_sync``, so code written against the old single
module keeps working; new code should import from the module that does the job.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.services import Services
from bot.store.db import SessionFactory
from bot.store.models import Provider
from bot.sync.api_accounts import (
    api_config,
    create_oauth_account,
    gmail_client,
    graph_client,
    load_account,
    oauth_app,
    store_tokens,
    token_source,
)
from bot.sync.api_send import send_mail_api
from bot.sync.api_store import (
    FETCH_BATCH,
    MAX_ATTEMPTS,
    UIDVALIDITY,
    SyncCtx,
    finish_run,
    location_uid,
)
from bot.sync.api_writeback import writeback
from bot.sync.gmail_sync import (
    FULL_SYNC_LIMIT,
    GMAIL_CURSOR,
    GMAIL_FOLDERS,
    gmail_label_chosen,
    sync_gmail,
)
from bot.sync.graph_sync import GRAPH_DEFAULT_FOLDERS, sync_graph
from bot.sync.imap_sync import RunStats


def sync_api_account(
    services: Services,
    session_factory: SessionFactory,
    account_id: int,
    run_id: int,
    *,
    stats: RunStats | None = None,
    after_batch: Callable[[str, int], None] | None = None,
) -> tuple[int, int, int]:
    """Sync one Gmail / Microsoft 365 account. Returns (new, changed, removed); per-message
    problems are appended to ``SyncRun(run_id).problems`` (and ``stats`` when given).
    Raises the errors of bot.providers.errors so the engine can set the account's status.
    ``after_batch`` runs after each committed batch (Gmail) or page (Graph): the engine's
    lease heartbeat, which raises LeaseLost when another worker took the account over."""
    if session_factory is not services.session_factory:
        services = Services(services.settings, session_factory, services.vault, services.access)
    account = load_account(services, account_id)
    ctx = SyncCtx(services, account_id, stats or RunStats(), {}, after_batch)
    limit = int(api_config(account).get("full_sync_limit") or FULL_SYNC_LIMIT)
    try:
        if account.provider == Provider.GMAIL:
            sync_gmail(ctx, gmail_client(services, account), limit)
        else:
            with graph_client(services, account) as client:
                sync_graph(ctx, client, account)
    finally:
        finish_run(ctx, run_id)
    return ctx.stats.new, ctx.stats.changed, ctx.stats.removed


__all__ = [
    "FETCH_BATCH",
    "FULL_SYNC_LIMIT",
    "GMAIL_CURSOR",
    "GMAIL_FOLDERS",
    "GRAPH_DEFAULT_FOLDERS",
    "MAX_ATTEMPTS",
    "UIDVALIDITY",
    "create_oauth_account",
    "gmail_client",
    "gmail_label_chosen",
    "graph_client",
    "location_uid",
    "oauth_app",
    "send_mail_api",
    "store_tokens",
    "sync_api_account",
    "token_source",
    "writeback",
]
