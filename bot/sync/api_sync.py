"""Gmail and Microsoft 365 accounts: sync through their APIs, write changes back, send.

Where things live for these accounts:

* ``Account.config`` = ``{"oauth": {client_id, tenant, redirect_uri, [token_uri,
  authority_host, ca_file]}, "api": {[base_url, ca_file, full_sync_limit, page_size]}}``;
  ``Account.credentials`` = Vault JSON ``{client_secret, access_token, refresh_token,
  expires_at, scope}``. Tokens are refreshed by bot.providers.oauth.TokenSource and saved
  back here in their own short transaction (the one token path, peers.md row 13).
* Cursors (``FolderState.cursor``, JSON): Gmail keeps one row named ``""`` with
  ``{"history_id"}``; Graph one row per folder (its well-known name) with ``{"delta_link"}``
  or, mid-round, ``{"next_link"}``. A cursor moves in the same transaction as the messages
  it covers (sync.md §1.4): a crash repeats work, never skips it.
* Where a message is: ``MessageLocation`` rows in per-label (Gmail: ``INBOX``, ``SENT``,
  ``ARCHIVE`` = in neither, not trashed) or per-folder (Graph) FolderStates, with
  ``uidvalidity = 1`` and ``uid`` a 63-bit hash of the provider id. So conversation state
  (archived / deleted / unread) is derived exactly as for IMAP (bot/sync/state.py).

Reset signals are normal: Gmail's 404 on an old historyId → a bounded full resync (the
newest ``full_sync_limit`` messages); Graph's 410 / syncStateNotFound → the folder's delta
round starts again. Both re-read through ``ingest_message``, which is idempotent by
provider id and Message-ID, so nothing doubles.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot.crypto import Vault
from bot.mail.parse import parse_message
from bot.providers.errors import AuthError, ConfigError, FolderNotFound
from bot.providers.gmail import GmailClient, GmailMessage, HistoryExpired
from bot.providers.graph import ROLE_OF, WELL_KNOWN, DeltaExpired, DeltaPage, GraphClient, NotFound
from bot.providers.oauth import REAUTH, OAuthApp, TokenSource, app_from_config
from bot.services import Services
from bot.store.db import SessionFactory, session_scope
from bot.store.models import (
    Account,
    AccountStatus,
    AuditLog,
    Conversation,
    Direction,
    FolderState,
    Message,
    MessageLocation,
    Provider,
    SyncRun,
)
from bot.sync.imap_sync import RunStats
from bot.sync.state import (
    folder_state,
    json_cursor,
    mark_deleted_if_gone,
    recompute_conversations,
    refresh_parents,
    set_json_cursor,
)

log = logging.getLogger(__name__)

UIDVALIDITY = 1  # API locations have no UIDVALIDITY; a constant keeps the IMAP shape
FULL_SYNC_LIMIT = 2000  # newest messages read by a first sync or a resync
FETCH_BATCH = 100  # messages per transaction
MAX_ATTEMPTS = 3  # failed ingests of one message before it is quarantined
GMAIL_CURSOR = ""  # the FolderState row holding Gmail's historyId

# Gmail labels that are locations (name → role); ARCHIVE is "All Mail minus Inbox".
GMAIL_FOLDERS = {"INBOX": "inbox", "SENT": "sent", "ARCHIVE": "archive"}
_GMAIL_SKIP_NEW = frozenset({"DRAFT", "SPAM", "TRASH"})  # never imported as new mail
GRAPH_DEFAULT_FOLDERS = ("inbox", "sentitems", "archive")


def location_uid(provider_id: str) -> int:
    """A stable 63-bit key for a provider id (fits BIGINT; collisions ~never)."""
    return int.from_bytes(hashlib.sha256(provider_id.encode()).digest()[:8], "big") >> 1


# -- accounts and tokens -----------------------------------------------------------------


def _secrets(vault: Vault, account: Account) -> dict[str, Any]:
    if not account.credentials:
        raise AuthError(f"{account.email} has no stored tokens and {REAUTH}.")
    return vault.decrypt(account.credentials)


def oauth_app(vault: Vault, account: Account) -> OAuthApp:
    config = dict((account.config or {}).get("oauth") or {})
    config["client_secret"] = _secrets(vault, account).get("client_secret")
    return app_from_config(account.provider.value, config)


def _saver(
    factory: SessionFactory, vault: Vault, account_id: int
) -> Callable[[dict[str, Any]], None]:
    def save(tokens: dict[str, Any]) -> None:
        with session_scope(factory) as s:
            acc = s.get_one(Account, account_id)
            data = vault.decrypt(acc.credentials) if acc.credentials else {}
            data.update({k: v for k, v in tokens.items() if k != "email"})
            acc.credentials = vault.encrypt(data)

    return save


def token_source(services: Services, account: Account) -> TokenSource:
    data = _secrets(services.vault, account)
    tokens = {k: data.get(k) for k in ("access_token", "refresh_token", "expires_at")}
    return TokenSource(
        oauth_app(services.vault, account),
        tokens,
        save=_saver(services.session_factory, services.vault, account.id),
    )


def _api(account: Account) -> dict[str, Any]:
    return dict((account.config or {}).get("api") or {})


def gmail_client(services: Services, account: Account) -> GmailClient:
    api = _api(account)
    return GmailClient(
        token_source(services, account),
        api_endpoint=api.get("base_url"),
        ca_file=api.get("ca_file"),
    )


def graph_client(services: Services, account: Account) -> GraphClient:
    api = _api(account)
    return GraphClient(
        token_source(services, account),
        base_url=api.get("base_url"),
        ca_file=api.get("ca_file"),
        page_size=int(api.get("page_size") or 50),
    )


def create_oauth_account(
    session: Session,
    vault: Vault,
    *,
    provider: Provider,
    email: str,
    oauth: dict[str, Any],
    tokens: dict[str, Any],
    channel_id: str | None,
    api: dict[str, Any] | None = None,
    sync_interval_seconds: int = 300,
    folders: Sequence[str] = (),
    auto_link: bool = True,
    created_by: str | None = None,
) -> Account:
    """Add a Gmail / Microsoft 365 account after a successful :func:`exchange_code`.
    ``oauth`` is the app config including ``client_secret`` (kept encrypted)."""
    if provider not in (Provider.GMAIL, Provider.GRAPH):
        raise ConfigError(f"{provider} is not an OAuth provider")
    app_from_config(provider.value, oauth)  # validates
    from bot.accounts import AccountError, add_account_row

    public = {k: v for k, v in oauth.items() if k != "client_secret"}
    secrets = {k: tokens.get(k) for k in ("access_token", "refresh_token", "expires_at", "scope")}
    try:
        return add_account_row(
            session,
            provider=provider,
            email=email,
            config={"oauth": public, "api": dict(api or {})},
            credentials=vault.encrypt({"client_secret": oauth.get("client_secret"), **secrets}),
            channel_id=channel_id,
            sync_interval_seconds=sync_interval_seconds,
            folders=folders,
            auto_link=auto_link,
            created_by=created_by,
        )
    except AccountError as exc:
        raise ConfigError(str(exc)) from exc


def store_tokens(
    session: Session,
    vault: Vault,
    account: Account,
    tokens: dict[str, Any],
    *,
    actor: str = "system",
) -> None:
    """Reconnect: new tokens from a fresh consent; the account syncs again at once."""
    data = vault.decrypt(account.credentials) if account.credentials else {}
    data.update(
        {k: tokens.get(k) for k in ("access_token", "refresh_token", "expires_at", "scope")}
    )
    account.credentials = vault.encrypt(data)
    account.status = AccountStatus.ACTIVE
    account.consecutive_failures = 0
    account.last_error = None
    account.next_sync_at = datetime.now(UTC)
    session.add(
        AuditLog(actor=actor, action="account.reconnect", account_id=account.id, details={})
    )


# -- shared store steps ------------------------------------------------------------------


@dataclass
class _Ctx:
    services: Services
    account_id: int
    stats: RunStats
    folders: dict[str, int]  # FolderState name → id


def _announce(s: Session, account: Account, result: Any, stats: RunStats, where: str) -> None:
    try:
        from bot.inbox.announce import announce_ingested
    except ImportError:
        return
    try:
        with s.begin_nested():
            announce_ingested(s, account, result)
    except Exception as exc:  # stored anyway; a Slack post problem must not undo the mail
        log.exception("announce failed for %s", where)
        stats.problem(where, None, f"not announced in Slack: {type(exc).__name__}")


def _ingest(
    ctx: _Ctx,
    s: Session,
    account: Account,
    raw: bytes,
    *,
    provider_id: str,
    thread_id: str | None,
    is_read: bool,
    received_at: datetime | None,
    where: str,
) -> Message:
    from bot.store.ingest import ingest_message

    with s.begin_nested():
        result = ingest_message(
            s,
            account,
            raw,
            provider_id=provider_id,
            provider_thread_id=thread_id or None,
            is_read=is_read,
            received_at=received_at,
        )
    message: Message = result.message
    if result.created:
        ctx.stats.new += 1
        if message.parse_defects:
            ctx.stats.problem(
                where,
                None,
                "kept with defects: " + "; ".join(message.parse_defects[:3]),
                message.message_id,
            )
        _announce(s, account, result, ctx.stats, where)
    else:
        if message.deleted:
            message.deleted = False  # seen again: it is back
        if message.provider_id is None:
            message.provider_id = provider_id  # our own send, stored before its id was known
        if message.is_read != is_read:
            message.is_read = is_read
            ctx.stats.changed += 1
    ctx.stats.touched_conversations.add(message.conversation_id)
    return message


def _set_locations(
    ctx: _Ctx,
    s: Session,
    message_pk: int,
    provider_id: str,
    wanted: Iterable[str],
    managed: Iterable[str],
) -> None:
    """Make the message's locations among the ``managed`` folders equal ``wanted``."""
    uid = location_uid(provider_id)
    managed_ids = {ctx.folders[n] for n in managed}
    wanted_ids = {ctx.folders[n] for n in wanted}
    have = {
        loc.folder_id: loc
        for loc in s.scalars(
            select(MessageLocation).where(
                MessageLocation.uid == uid,
                MessageLocation.folder_id.in_(managed_ids),
            )
        )
    }
    for folder_id, loc in have.items():
        if folder_id not in wanted_ids:
            s.delete(loc)
            ctx.stats.removed_messages.add(loc.message_id)
    for folder_id in wanted_ids - set(have):
        s.add(
            MessageLocation(
                message_id=message_pk,
                folder_id=folder_id,
                uidvalidity=UIDVALIDITY,
                uid=uid,
                flags=[],
            )
        )
    s.flush()


def _drop_locations(ctx: _Ctx, s: Session, provider_id: str, folders: Iterable[str]) -> int:
    uid = location_uid(provider_id)
    ids = [ctx.folders[n] for n in folders]
    gone = list(
        s.scalars(
            select(MessageLocation).where(
                MessageLocation.uid == uid, MessageLocation.folder_id.in_(ids)
            )
        )
    )
    for loc in gone:
        ctx.stats.removed_messages.add(loc.message_id)
        s.delete(loc)
    s.flush()
    return len(gone)


def _begin(s: Session, fs_id: int) -> None:
    # A write first: opens the transaction (pysqlite) and locks the cursor row.
    s.execute(
        update(FolderState).where(FolderState.id == fs_id).values(synced_at=datetime.now(UTC))
    )


def _finish(ctx: _Ctx, run_id: int | None) -> None:
    with session_scope(ctx.services.session_factory) as s:
        convs = mark_deleted_if_gone(s, ctx.stats.removed_messages)
        changed = recompute_conversations(s, convs | ctx.stats.touched_conversations)
        refresh_parents(s, changed | ctx.stats.changed_conversations)
        if run_id is not None:
            run = s.get(SyncRun, run_id)
            if run is not None:
                run.problems = [*(run.problems or []), *ctx.stats.problems]
                run.folders = sorted(set(run.folders or []) | set(ctx.stats.folders))


# -- Gmail sync --------------------------------------------------------------------------


def _gmail_wanted(labels: frozenset[str]) -> list[str]:
    wanted: list[str] = [n for n in ("INBOX", "SENT") if n in labels]
    if not labels & {"INBOX", "SENT", "TRASH", "SPAM", "DRAFT"}:
        wanted.append("ARCHIVE")
    return wanted


def _known_provider_ids(factory: SessionFactory, account_id: int, ids: Sequence[str]) -> set[str]:
    known: set[str] = set()
    with session_scope(factory) as s:
        for i in range(0, len(ids), 500):
            known.update(
                x
                for x in s.scalars(
                    select(Message.provider_id).where(
                        Message.account_id == account_id,
                        Message.provider_id.in_(list(ids[i : i + 500])),
                    )
                )
                if x
            )
    return known


def _gmail_batch(
    ctx: _Ctx, fetched: list[tuple[str, GmailMessage | None]], cursor: dict[str, Any] | None
) -> None:
    """Store one batch; when ``cursor`` is given it is committed with it."""
    factory = ctx.services.session_factory
    with session_scope(factory) as s:
        fs_id = ctx.folders[GMAIL_CURSOR]
        _begin(s, fs_id)
        account = s.get_one(Account, ctx.account_id)
        fs = s.get_one(FolderState, fs_id)
        state = json_cursor(fs)
        retry: dict[str, int] = dict(state.get("retry") or {})
        quarantined: list[str] = list(state.get("quarantined") or [])
        for gid, gm in fetched:
            if gm is None:  # deleted for good
                if _drop_locations(ctx, s, gid, GMAIL_FOLDERS):
                    ctx.stats.removed += 1
                retry.pop(gid, None)
                continue
            message = s.scalar(
                select(Message).where(
                    Message.account_id == ctx.account_id, Message.provider_id == gid
                )
            )
            unread = "UNREAD" in gm.label_ids
            try:
                if message is None:
                    if gm.label_ids & _GMAIL_SKIP_NEW or not gm.raw:
                        continue
                    message = _ingest(
                        ctx,
                        s,
                        account,
                        gm.raw,
                        provider_id=gid,
                        thread_id=gm.thread_id,
                        is_read=not unread,
                        received_at=gm.internal_date,
                        where="Gmail",
                    )
                elif message.is_read == unread:
                    message.is_read = not unread
                    ctx.stats.changed += 1
                    ctx.stats.touched_conversations.add(message.conversation_id)
            except Exception as exc:
                log.exception("Gmail message %s could not be stored", gid)
                attempts = retry.get(gid, 0) + 1
                if attempts >= MAX_ATTEMPTS:
                    retry.pop(gid, None)
                    quarantined.append(gid)
                    ctx.stats.problem(
                        "Gmail",
                        None,
                        f"message {gid} quarantined after {attempts} failed attempts ({type(exc).__name__})",
                    )
                else:
                    retry[gid] = attempts
                    ctx.stats.problem(
                        "Gmail",
                        None,
                        f"message {gid} could not be stored ({type(exc).__name__}); will retry",
                    )
                continue
            retry.pop(gid, None)
            message.is_flagged = "STARRED" in gm.label_ids
            _set_locations(ctx, s, message.id, gid, _gmail_wanted(gm.label_ids), GMAIL_FOLDERS)
            ctx.stats.touched_conversations.add(message.conversation_id)
        if cursor is not None:
            state.update(cursor)
        state["retry"], state["quarantined"] = retry, sorted(set(quarantined))[-1000:]
        set_json_cursor(fs, {k: v for k, v in state.items() if v})


def _gmail_fetch(
    client: GmailClient, ids: Sequence[str], known: set[str]
) -> list[tuple[str, GmailMessage | None]]:
    # Known messages only need their labels (format=minimal, sync.md §1.2).
    return [(i, client.get(i, raw=i not in known)) for i in ids]


def _gmail_apply(
    ctx: _Ctx, client: GmailClient, ids: list[str], deleted: Sequence[str], cursor: dict[str, Any]
) -> None:
    factory = ctx.services.session_factory
    known = _known_provider_ids(factory, ctx.account_id, ids)
    batches = [ids[i : i + FETCH_BATCH] for i in range(0, len(ids), FETCH_BATCH)]
    gone: list[tuple[str, GmailMessage | None]] = [(d, None) for d in deleted]
    if not batches:
        _gmail_batch(ctx, gone, cursor)
        return
    for n, chunk in enumerate(batches):
        fetched = _gmail_fetch(client, chunk, known)
        if n == 0:
            fetched = gone + fetched
        _gmail_batch(ctx, fetched, cursor if n == len(batches) - 1 else None)


def _sync_gmail(ctx: _Ctx, client: GmailClient, limit: int) -> None:
    factory = ctx.services.session_factory
    with session_scope(factory) as s:
        for name, role in (*GMAIL_FOLDERS.items(), (GMAIL_CURSOR, None)):
            ctx.folders[name] = folder_state(s, ctx.account_id, name, role).id
        state = json_cursor(s.get_one(FolderState, ctx.folders[GMAIL_CURSOR]))
    ctx.stats.folders.extend(["INBOX", "SENT", "ARCHIVE"])
    history_id = state.get("history_id")
    retry = [str(k) for k in state.get("retry") or {}]
    if history_id:
        try:
            page = client.history(str(history_id))
        except HistoryExpired:
            ctx.stats.problem(
                "Gmail",
                None,
                "history expired on the server: newest messages re-read, no duplicates",
            )
            history_id = None
        else:
            gone = set(page.deleted)
            ids = [
                i for i in dict.fromkeys([*retry, *page.added, *page.relabelled]) if i not in gone
            ]
            _gmail_apply(ctx, client, ids, sorted(gone), {"history_id": page.history_id})
            return
    # Full (re)sync. The cursor is read first, so changes made meanwhile are replayed.
    start = str(client.profile().get("historyId") or "")
    ids = [i for i, _t in client.list_ids(limit=limit)]
    ids.reverse()  # oldest first: parents before replies
    _gmail_apply(ctx, client, list(dict.fromkeys([*retry, *ids])), (), {"history_id": start})
    with session_scope(factory) as s:
        fs = s.get_one(FolderState, ctx.folders[GMAIL_CURSOR])
        fs.last_full_scan_at = datetime.now(UTC)


# -- Graph sync --------------------------------------------------------------------------


def _graph_folders(account: Account) -> list[tuple[str, str | None]]:
    names = list(account.folders or GRAPH_DEFAULT_FOLDERS)
    return [(n, ROLE_OF.get(n.lower())) for n in names]


def _graph_page(
    ctx: _Ctx,
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
    known = _known_provider_ids(factory, ctx.account_id, new_ids)
    mimes = {i: client.mime(i) for i in new_ids if i not in known}
    with session_scope(factory) as s:
        fs_id = ctx.folders[name]
        _begin(s, fs_id)
        account = s.get_one(Account, ctx.account_id)
        fs = s.get_one(FolderState, fs_id)
        state = json_cursor(fs)
        retry: dict[str, dict[str, Any]] = dict(state.get("retry") or {})
        quarantined: list[str] = list(state.get("quarantined") or [])
        for iid in page.removed:
            retry.pop(iid, None)
            if _drop_locations(ctx, s, iid, [name]):
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
                if raw is None:
                    retry.pop(iid, None)
                    continue  # deleted between the delta page and the download
                try:
                    message = _ingest(
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
            _set_locations(ctx, s, message.id, iid, [name], [name])
        cursor: dict[str, Any] = {
            k: v for k, v in state.items() if k in ("delta_link", "next_link")
        }
        if not retrying:
            cursor = (
                {"delta_link": page.delta_link}
                if page.delta_link
                else {"next_link": page.next_link}
            )
        cursor["retry"], cursor["quarantined"] = retry, sorted(set(quarantined))[-1000:]
        set_json_cursor(fs, {k: v for k, v in cursor.items() if v})


def _graph_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def _sweep(ctx: _Ctx, name: str, seen: set[str]) -> None:
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


def _sync_graph_folder(ctx: _Ctx, client: GraphClient, name: str) -> None:
    with session_scope(ctx.services.session_factory) as s:
        state = json_cursor(s.get_one(FolderState, ctx.folders[name]))
    retry = state.get("retry") or {}
    if retry:
        items = [dict(v.get("item") or {}, id=k) for k, v in retry.items()]
        _graph_page(ctx, client, name, DeltaPage(items, [], None, None), None, retrying=True)
    link = state.get("next_link") or state.get("delta_link")
    for attempt in (1, 2):
        seen: set[str] | None = set() if link is None else None
        try:
            for page in client.delta(name, link):
                _graph_page(ctx, client, name, page, seen)
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


def _sync_graph(ctx: _Ctx, client: GraphClient, account: Account) -> None:
    with session_scope(ctx.services.session_factory) as s:
        for name, role in _graph_folders(account):
            ctx.folders[name] = folder_state(s, ctx.account_id, name, role).id
    for name, _role in _graph_folders(account):
        ctx.stats.folders.append(name)
        _sync_graph_folder(ctx, client, name)


# -- entry points ------------------------------------------------------------------------


def _load(services: Services, account_id: int) -> Account:
    with session_scope(services.session_factory) as s:
        account = s.get_one(Account, account_id)
        s.expunge(account)
    if account.provider not in (Provider.GMAIL, Provider.GRAPH):
        raise ConfigError(f"{account.email} is not a Gmail or Microsoft 365 account")
    return account


def sync_api_account(
    services: Services,
    session_factory: SessionFactory,
    account_id: int,
    run_id: int,
    *,
    stats: RunStats | None = None,
) -> tuple[int, int, int]:
    """Sync one Gmail / Microsoft 365 account. Returns (new, changed, removed); per-message
    problems are appended to ``SyncRun(run_id).problems`` (and ``stats`` when given).
    Raises the errors of bot.providers.errors so the engine can set the account's status."""
    if session_factory is not services.session_factory:
        services = Services(services.settings, session_factory, services.vault, services.access)
    account = _load(services, account_id)
    ctx = _Ctx(services, account_id, stats or RunStats(), {})
    limit = int(_api(account).get("full_sync_limit") or FULL_SYNC_LIMIT)
    try:
        if account.provider == Provider.GMAIL:
            _sync_gmail(ctx, gmail_client(services, account), limit)
        else:
            with graph_client(services, account) as client:
                _sync_graph(ctx, client, account)
    finally:
        _finish(ctx, run_id)
    return ctx.stats.new, ctx.stats.changed, ctx.stats.removed


# -- write-back --------------------------------------------------------------------------

_MOVES = {  # outbox kind → (from roles, to role), as for IMAP (bot/outbox/mail_handlers.py)
    "mail.archive": (("inbox",), "archive"),
    "mail.unarchive": (("archive",), "inbox"),
    "mail.trash": (("inbox", "archive"), "trash"),
}


def writeback(
    services: Services, account: Account, kind: str, payload: dict[str, Any]
) -> dict[str, Any] | None:
    """Apply one ``mail.*`` outbox row to a Gmail / Microsoft 365 mailbox, then the store.
    Idempotent: labels and read flags are set, not toggled; moves move what is still there."""
    account = _load(services, account.id)
    if kind == "mail.set_read":
        ids = [int(i) for i in payload.get("message_ids") or []]
        return _set_read(services, account, ids, bool(payload.get("read", True)))
    if kind in _MOVES:
        from_roles, to_role = _MOVES[kind]
        return _move(services, account, int(payload["conversation_id"]), from_roles, to_role)
    raise ValueError(f"unknown write-back kind {kind!r}")


def _messages(s: Session, account_id: int, **where: Any) -> list[Message]:
    query = select(Message).where(
        Message.account_id == account_id, Message.provider_id.is_not(None)
    )
    if "ids" in where:
        query = query.where(Message.id.in_(where["ids"]))
    if "conversation_id" in where:
        query = query.where(Message.conversation_id == where["conversation_id"])
    return list(s.scalars(query.order_by(Message.id)))


def _set_read(services: Services, account: Account, ids: list[int], read: bool) -> dict[str, Any]:
    factory = services.session_factory
    with session_scope(factory) as s:
        targets = [str(m.provider_id) for m in _messages(s, account.id, ids=ids)]
    written = 0
    if account.provider == Provider.GMAIL:
        gmail = gmail_client(services, account)
        for pid in targets:
            if read:
                done = gmail.modify(pid, remove=["UNREAD"])
            else:
                done = gmail.modify(pid, add=["UNREAD"])
            written += done is not None
    else:
        with graph_client(services, account) as graph:
            written = sum(graph.set_read(pid, read) for pid in targets)
    with session_scope(factory) as s:
        convs: set[int] = set()
        for m in s.scalars(
            select(Message).where(Message.account_id == account.id, Message.id.in_(ids))
        ):
            m.is_read = read
            convs.add(m.conversation_id)
        refresh_parents(s, recompute_conversations(s, convs))
    return {"written": written}


def _move(
    services: Services,
    account: Account,
    conversation_id: int,
    from_roles: Sequence[str],
    to_role: str,
) -> dict[str, Any]:
    factory = services.session_factory
    ctx = _Ctx(services, account.id, RunStats(), {})
    with session_scope(factory) as s:
        conv = s.get(Conversation, conversation_id)
        if conv is None or conv.account_id != account.id:
            return {"moved": 0, "folder": None}
        for fs in s.scalars(select(FolderState).where(FolderState.account_id == account.id)):
            ctx.folders[fs.name] = fs.id
        msgs = _messages(s, account.id, conversation_id=conversation_id)
        located: dict[int, set[str]] = {}
        role_of = {
            fs.id: (fs.name, fs.role)
            for fs in s.scalars(select(FolderState).where(FolderState.account_id == account.id))
        }
        for loc in s.scalars(
            select(MessageLocation).where(MessageLocation.message_id.in_([m.id for m in msgs]))
        ):
            name, role = role_of.get(loc.folder_id, ("", None))
            if role in from_roles:
                located.setdefault(loc.message_id, set()).add(name)
        work = [(m.id, str(m.provider_id), m.direction) for m in msgs]
    moved = 0
    if account.provider == Provider.GMAIL:
        if to_role == "trash":
            # Only what sits in the inbox or archive: the team's own sent replies stay, as
            # with IMAP and Graph (Gmail purges Trash after 30 days; security review #21).
            work = [w for w in work if w[0] in located]
        moved = _gmail_move(ctx, gmail_client(services, account), work, to_role, conversation_id)
        folder = {"archive": "ARCHIVE", "inbox": "INBOX", "trash": "TRASH"}[to_role]
    else:
        folder = WELL_KNOWN[to_role]
        with graph_client(services, account) as graph:
            moved = _graph_move(
                ctx, graph, [(pk, pid) for pk, pid, _d in work if pk in located], located, folder
            )
    with session_scope(factory) as s:
        convs = mark_deleted_if_gone(s, ctx.stats.removed_messages) | {conversation_id}
        conv = s.get_one(Conversation, conversation_id)
        if to_role == "archive":
            conv.archived = True
        elif to_role == "inbox":
            conv.archived, conv.deleted = False, False
        changed = recompute_conversations(s, convs) | {conversation_id}
        if to_role == "trash":
            conv.deleted = True
        refresh_parents(s, changed)
    return {"moved": moved, "folder": folder}


def _gmail_move(
    ctx: _Ctx,
    gmail: GmailClient,
    work: list[tuple[int, str, Direction]],
    to_role: str,
    conversation_id: int,
) -> int:
    results: list[tuple[int, str, GmailMessage | None]] = []
    if to_role == "inbox":
        # "Move to Inbox": the received messages; a thread of our own mail as a whole.
        inbound = [w for w in work if w[2] == Direction.INBOUND] or work
        for pk, pid, _d in inbound:
            results.append((pk, pid, gmail.modify(pid, add=["INBOX"], remove=["TRASH"])))
    elif to_role == "archive":
        for pk, pid, _d in work:
            results.append((pk, pid, gmail.modify(pid, remove=["INBOX"])))
    else:
        for pk, pid, _d in work:
            results.append((pk, pid, gmail.trash(pid)))
    with session_scope(ctx.services.session_factory) as s:
        for name, role in GMAIL_FOLDERS.items():
            ctx.folders[name] = folder_state(s, ctx.account_id, name, role).id
        for pk, pid, gm in results:
            if gm is None:
                _drop_locations(ctx, s, pid, GMAIL_FOLDERS)
            else:
                _set_locations(ctx, s, pk, pid, _gmail_wanted(gm.label_ids), GMAIL_FOLDERS)
                if to_role == "inbox":
                    s.execute(update(Message).where(Message.id == pk).values(deleted=False))
    return sum(1 for *_x, gm in results if gm is not None)


def _graph_move(
    ctx: _Ctx,
    graph: GraphClient,
    work: list[tuple[int, str]],
    located: dict[int, set[str]],
    dest: str,
) -> int:
    done: list[tuple[int, str, str | None]] = []
    for pk, pid in work:
        result = graph.move(pid, dest)
        done.append((pk, pid, str(result["id"]) if result else None))
    with session_scope(ctx.services.session_factory) as s:
        for pk, pid, new_id in done:
            _drop_locations(ctx, s, pid, located.get(pk, ()))
            if new_id is None:
                continue
            if new_id != pid:  # only without immutable ids; keep the store pointing at it
                s.execute(update(Message).where(Message.id == pk).values(provider_id=new_id))
            if dest in ctx.folders:  # the destination is synced: the message is there now
                _set_locations(ctx, s, pk, new_id, [dest], [dest])
                s.execute(update(Message).where(Message.id == pk).values(deleted=False))
    return sum(1 for *_x, new_id in done if new_id is not None)


# -- sending -----------------------------------------------------------------------------


def _thread_hint(s: Session, account_id: int, raw: bytes) -> str | None:
    """Gmail threads a sent reply only when told the thread id (sync.md §1.2)."""
    parsed = parse_message(raw)
    refs = [*parsed.in_reply_to, *reversed(parsed.references)]
    for ref in refs:
        thread = s.scalar(
            select(Message.provider_thread_id).where(
                Message.account_id == account_id, Message.message_id == ref.strip("<>")
            )
        )
        if thread:
            return str(thread)
    return None


def _ingest_sent(
    services: Services,
    account_id: int,
    raw: bytes,
    provider_id: str | None,
    thread_id: str | None,
    sent_by: str | None,
    folder: str | None,
) -> None:
    from bot.store.ingest import ingest_message

    with session_scope(services.session_factory) as s:
        account = s.get_one(Account, account_id)
        result = ingest_message(
            s,
            account,
            raw,
            provider_id=provider_id,
            provider_thread_id=thread_id,
            is_read=True,
            direction=Direction.OUTBOUND,
            sent_by=sent_by,
        )
        if provider_id and result.message.provider_id is None:
            result.message.provider_id = provider_id
        if provider_id and folder:
            ctx = _Ctx(
                services,
                account_id,
                RunStats(),
                {folder: folder_state(s, account_id, folder, "sent").id},
            )
            _set_locations(ctx, s, result.message.id, provider_id, [folder], [folder])
        if result.created:
            try:
                from bot.inbox.announce import announce_ingested
            except ImportError:
                pass
            else:
                announce_ingested(s, account, result)


def send_mail_api(
    services: Services,
    account: Account,
    raw: bytes,
    message_id: str,
    *,
    sent_by: str | None = None,
    accepted: dict[str, Any] | None = None,
    before_send: Callable[[], None] | None = None,
    on_accepted: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Send through the mailbox's own API; it files the Sent copy itself (no append).

    Idempotent by Message-ID: skipped when the store or the mailbox's Sent already has it
    (Gmail ``q=rfc822msgid:``; Graph ``$filter=internetMessageId eq '<…>'`` in Sent Items).
    ``accepted``/``before_send``/``on_accepted`` as in ``writeback.send_mail``: an accepted
    send is never sent again (Graph files its Sent copy late, so the search can miss it)."""
    account = _load(services, account.id)
    mid = message_id.strip().strip("<>")
    with session_scope(services.session_factory) as s:
        if (
            s.scalar(
                select(Message.id).where(
                    Message.account_id == account.id, Message.message_id == mid
                )
            )
            is not None
        ):
            return
        thread = _thread_hint(s, account.id, raw) if account.provider == Provider.GMAIL else None
    if account.provider == Provider.GMAIL:
        gmail = gmail_client(services, account)
        if accepted and accepted.get("gmail_id"):
            gid, tid = str(accepted["gmail_id"]), accepted.get("thread_id")
            _ingest_sent(services, account.id, raw, gid, tid, sent_by, "SENT")
            return
        found = gmail.find_message_id(mid)
        if found:
            gm = gmail.get(found[0], raw=False)
            _ingest_sent(
                services, account.id, raw, found[0], gm.thread_id if gm else None, sent_by, "SENT"
            )
            return
        if before_send is not None:
            before_send()
        sent = gmail.send(raw, thread_id=thread)
        log.info("sent %s through Gmail for account %s", mid, account.id)
        if on_accepted is not None:
            on_accepted({"gmail_id": sent.id, "thread_id": sent.thread_id})
        _ingest_sent(services, account.id, raw, sent.id, sent.thread_id, sent_by, "SENT")
        return
    with graph_client(services, account) as graph:
        found = [] if accepted else graph.find_internet_message_id("sentitems", mid)
        if not found and not accepted:
            if before_send is not None:
                before_send()
            graph.send_mime(raw)
            log.info("sent %s through Microsoft Graph for account %s", mid, account.id)
            if on_accepted is not None:
                on_accepted({})
    # Graph's sendMail returns no id: the Sent Items delta supplies it on the next sync.
    folder = "sentitems" if "sentitems" in [n for n, _r in _graph_folders(account)] else None
    _ingest_sent(
        services,
        account.id,
        raw,
        found[0] if found else None,
        None,
        sent_by,
        folder if found else None,
    )


__all__ = [
    "create_oauth_account",
    "location_uid",
    "send_mail_api",
    "store_tokens",
    "sync_api_account",
    "token_source",
    "writeback",
]
