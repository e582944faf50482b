"""Microsoft 365 sync: a delta round per folder.

One FolderState row per folder (its well-known name) with ``{"delta_link"}`` or, mid-round,
``{"next_link"}``, plus the ``retry`` / ``quarantined`` lists. Graph's 410 /
syncStateNotFound → the folder's delta round starts again; a sweep after a complete fresh
round drops locations it did not list.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot.providers.errors import FolderNotFound, ProtocolError, ProviderError, TransientError
from bot.providers.graph import (
    ROLE_OF,
    DeltaExpired,
    DeltaPage,
    FolderMissing,
    GraphClient,
    NotFound,
)
from bot.store.db import session_scope
from bot.store.models import (
    Account,
    FolderState,
    Message,
    MessageLocation,
)
from bot.sync.api_accounts import api_config
from bot.sync.api_store import (
    MAX_ATTEMPTS,
    SyncCtx,
    begin_batch,
    drop_locations,
    ingest,
    known_provider_ids,
    location_uid,
    set_locations,
)
from bot.sync.state import (
    folder_state,
    json_cursor,
    set_json_cursor,
)

log = logging.getLogger(__name__)

GRAPH_DEFAULT_FOLDERS = ("inbox", "sentitems", "archive")
FIRST_SYNC_DAYS = 90  # a folder's first delta round: mail received in the last N days


def graph_folders(account: Account) -> list[tuple[str, str | None]]:
    names = list(account.folders or GRAPH_DEFAULT_FOLDERS)
    return [(n, ROLE_OF.get(n.lower())) for n in names]


def _graph_page(
    ctx: SyncCtx,
    client: GraphClient,
    name: str,
    page: DeltaPage,
    seen: set[str] | None,
    *,
    retrying: bool = False,
) -> None:
    """Store one delta page and commit its link with it. A message that fails to store goes
    on the folder's retry list (its delta entry is gone once the link moves on) and is
    fetched by id on the next runs; after MAX_ATTEMPTS it is quarantined and listed in the
    sync log (security review #4). `retrying`: the page is that list, the link stays."""
    factory = ctx.services.session_factory
    new_ids = [item["id"] for item in page.changed]
    known = known_provider_ids(factory, ctx.account_id, new_ids)
    mimes: dict[str, bytes | None] = {}
    fetch_errors: dict[str, ProviderError] = {}
    for i in new_ids:
        if i in known:
            continue
        try:
            mimes[i] = client.mime(i)
        except (TransientError, ProtocolError) as exc:
            # One message Graph keeps failing (500, ErrorItemCorrupt) goes on the retry list
            # like a store failure, so it cannot block the folder; all of them failing means
            # Graph is in trouble: the run ends and the link stays.
            fetch_errors[i] = exc
    if fetch_errors and not mimes and not retrying:
        raise next(iter(fetch_errors.values()))
    with session_scope(factory) as s:
        fs_id = ctx.folders[name]
        begin_batch(s, fs_id)
        account = s.get_one(Account, ctx.account_id)
        fs = s.get_one(FolderState, fs_id)
        state = json_cursor(fs)
        retry: dict[str, dict[str, Any]] = dict(state.get("retry") or {})
        quarantined: list[str] = list(state.get("quarantined") or [])
        for iid in page.removed:
            retry.pop(iid, None)
            if drop_locations(ctx, s, iid, [name]):
                ctx.stats.removed += 1
        for item in page.changed:
            iid = str(item["id"])
            if seen is not None:
                seen.add(iid)
            is_read = bool(item.get("isRead"))
            message = s.scalar(
                select(Message).where(
                    Message.account_id == ctx.account_id, Message.provider_id == iid
                )
            )
            if message is None:
                raw = mimes.get(iid)
                if raw is None and iid not in fetch_errors:
                    retry.pop(iid, None)
                    continue  # deleted between the delta page and the download
                try:
                    if iid in fetch_errors:
                        raise fetch_errors[iid]
                    assert raw is not None
                    message = ingest(
                        ctx,
                        s,
                        account,
                        raw,
                        provider_id=iid,
                        thread_id=item.get("conversationId"),
                        is_read=is_read,
                        received_at=_graph_time(item.get("receivedDateTime")),
                        where=name,
                    )
                except Exception as exc:
                    log.exception("Graph message in %s could not be stored", name)
                    attempts = int((retry.get(iid) or {}).get("attempts") or 0) + 1
                    if attempts >= MAX_ATTEMPTS:
                        retry.pop(iid, None)
                        quarantined.append(iid)
                        ctx.stats.problem(
                            name,
                            None,
                            f"message {iid} quarantined after {attempts} failed attempts "
                            f"({type(exc).__name__})",
                        )
                    else:
                        keep = ("id", "conversationId", "isRead", "receivedDateTime")
                        retry[iid] = {"attempts": attempts, "item": {k: item.get(k) for k in keep}}
                        ctx.stats.problem(
                            name,
                            None,
                            f"message {iid} could not be stored ({type(exc).__name__}); will retry",
                        )
                    continue
            elif message.is_read != is_read:
                message.is_read = is_read
                ctx.stats.changed += 1
            retry.pop(iid, None)
            if message.deleted:
                message.deleted = False
            ctx.stats.touched_conversations.add(message.conversation_id)
            set_locations(ctx, s, message.id, iid, [name], [name])
        cursor: dict[str, Any] = {
            k: v for k, v in state.items() if k in ("delta_link", "next_link", "fresh")
        }
        if not retrying:
            cursor = (
                {"delta_link": page.delta_link}
                if page.delta_link
                else {"next_link": page.next_link}
            )
            if seen is not None and not page.delta_link:
                cursor["fresh"] = True  # mid first round: its sweep needs the whole round
        cursor["retry"], cursor["quarantined"] = retry, sorted(set(quarantined))[-1000:]
        set_json_cursor(fs, {k: v for k, v in cursor.items() if v})


def _graph_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _sweep(ctx: SyncCtx, name: str, seen: set[str]) -> None:
    """After a complete first round: locations in this folder it did not list are stale."""
    with session_scope(ctx.services.session_factory) as s:
        fs_id = ctx.folders[name]
        keep = {location_uid(i) for i in seen}
        stale = [
            loc
            for loc in s.scalars(select(MessageLocation).where(MessageLocation.folder_id == fs_id))
            if loc.uid not in keep
        ]
        for loc in stale:
            ctx.stats.removed_messages.add(loc.message_id)
            s.delete(loc)
        ctx.stats.removed += len(stale)
        s.get_one(FolderState, fs_id).last_full_scan_at = datetime.now(UTC)


def _sync_graph_folder(ctx: SyncCtx, client: GraphClient, name: str, since: str) -> None:
    with session_scope(ctx.services.session_factory) as s:
        state = json_cursor(s.get_one(FolderState, ctx.folders[name]))
    retry = state.get("retry") or {}
    if retry:
        items = [dict(v.get("item") or {}, id=k) for k, v in retry.items()]
        _graph_page(ctx, client, name, DeltaPage(items, [], None, None), None, retrying=True)
    link = state.get("next_link") or state.get("delta_link")
    if state.get("fresh") and state.get("next_link"):
        # A first round was interrupted: what it listed before is not known any more, and
        # the sweep after it needs every id, so the round starts again (ids already stored
        # are not downloaded again).
        link = None
    for attempt in (1, 2):
        seen: set[str] | None = set() if link is None else None
        try:
            for n, page in enumerate(
                client.delta(name, link, since=since if link is None else None)
            ):
                _graph_page(ctx, client, name, page, seen)
                if ctx.after_batch is not None:
                    ctx.after_batch(name, n)  # renews the lease; LeaseLost ends the run
        except FolderMissing:
            raise
        except NotFound as exc:
            raise FolderNotFound(name) from exc
        except DeltaExpired:
            if attempt == 2:
                raise
            ctx.stats.problem(
                name, None, "delta token expired on the server: folder re-read, no duplicates"
            )
            with session_scope(ctx.services.session_factory) as s:
                set_json_cursor(s.get_one(FolderState, ctx.folders[name]), {})
            link = None
            continue
        if seen is not None:
            _sweep(ctx, name, seen)
        return


def sync_graph(ctx: SyncCtx, client: GraphClient, account: Account) -> None:
    with session_scope(ctx.services.session_factory) as s:
        for name, role in graph_folders(account):
            ctx.folders[name] = folder_state(s, ctx.account_id, name, role).id
    # The first round of a folder reads only recent mail (delta's receivedDateTime filter):
    # a 100,000-message Archive would otherwise be downloaded whole.
    days = int(api_config(account).get("first_sync_days") or FIRST_SYNC_DAYS)
    since = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for name, _role in graph_folders(account):
        ctx.stats.folders.append(name)
        try:
            _sync_graph_folder(ctx, client, name, since)
        except FolderMissing as exc:
            if name.lower() not in ROLE_OF:
                raise FolderNotFound(name) from exc  # a folder the admin picked: settings
            # Well-known folders can be absent (no Archive until One-Click Archive was set
            # up): the other folders sync, and the sync log says why this one did not.
            ctx.stats.problem(
                name,
                None,
                f"the folder '{name}' does not exist in this mailbox: not synced (remove it "
                "from the account's folders, or create it in Outlook)",
            )
