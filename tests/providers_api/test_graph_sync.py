"""Microsoft 365: delta sync per folder, immutable ids, expired delta links, throttling,
tokens (msal against a single-tenant authority), write-back and sending."""

from __future__ import annotations

import pytest

from bot.providers.errors import AuthError, ConfigError
from bot.providers.oauth import REAUTH
from bot.store.models import Provider
from bot.sync.api_sync import send_mail_api, writeback
from tests.fakes.graph_server import graph_error
from tests.providers_api.conftest import MS_CLIENT, TENANT, ApiEnv, make_raw


def _graph_requests(env: ApiEnv, email: str) -> list[dict[str, str]]:
    return [
        r.headers
        for r in env.graph.server.requests
        if env.oauth.who(r.headers.get("authorization")) == email
    ]


def test_full_then_incremental_delta_with_immutable_ids(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH, page_size=2)
    raw1, mid1 = make_raw("Invoice")
    env.graph.deliver(email, raw1)
    raw2, mid2 = make_raw("Re: Invoice", in_reply_to=mid1)
    env.graph.deliver(email, raw2, is_read=True)
    for i in range(3):
        env.graph.deliver(email, make_raw(f"bulk {i}")[0])
    env.graph.deliver(email, make_raw("sent one", sender=email)[0], "sentitems", is_read=True)
    assert env.sync(aid) == (6, 0, 0)
    m1, m2 = env.by_mid(aid, mid1), env.by_mid(aid, mid2)
    assert m1.conversation_id == m2.conversation_id
    assert (m1.is_read, m2.is_read) == (False, True)
    assert m1.provider_thread_id  # conversationId kept as a threading hint
    assert env.where(aid, mid1) == {"inbox"}
    assert "deltatoken" in (env.cursor(aid, "inbox") or "")
    headers = _graph_requests(env, email)
    assert headers and all('IdType="ImmutableId"' in h.get("prefer", "") for h in headers)
    assert any("odata.maxpagesize=2" in h.get("prefer", "") for h in headers)

    raw3, mid3 = make_raw("New one")
    env.graph.deliver(email, raw3)
    env.graph.set_read_item(email, m1.provider_id or "", True)
    assert env.sync(aid) == (1, 1, 0)
    assert env.by_mid(aid, m1.message_id).is_read

    # Moved to Archive in Outlook: same id, same row, now archived; deleted: gone.
    env.graph.move_item(email, m1.provider_id or "", "archive")
    env.graph.move_item(email, m2.provider_id or "", "archive")
    env.graph.delete_item(email, env.by_mid(aid, mid3).provider_id or "")
    env.sync(aid)
    assert env.where(aid, mid1) == {"archive"}
    assert env.conversation(m1.conversation_id).archived
    assert not env.by_mid(aid, mid1).deleted
    assert env.by_mid(aid, mid3).deleted
    assert len(env.messages(aid)) == 7


def test_expired_delta_link_resyncs_without_duplicates(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH, page_size=3)
    ids = [env.graph.deliver(email, make_raw(f"m{i}")[0]) for i in range(4)]
    assert env.sync(aid)[0] == 4
    env.graph.deliver(email, make_raw("late")[0])
    env.graph.delete_item(email, ids[0])  # gone while the token was expiring
    env.graph.expire_delta_tokens(email)
    new, _changed, removed = env.sync(aid)
    assert new == 1 and removed == 1  # the full round's sweep finds the deleted one
    msgs = env.messages(aid)
    assert len(msgs) == len({m.message_id for m in msgs}) == 5
    assert any("delta token expired" in str(p["problem"]) for p in env.problems())
    env.graph.deliver(email, make_raw("after")[0])
    assert env.sync(aid) == (1, 0, 0)


def test_throttling_retry_after_is_honoured(api_env: ApiEnv, waits: list[float]) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH, page_size=2)
    for i in range(3):
        env.graph.deliver(email, make_raw(f"t{i}")[0])
    throttled = graph_error(
        429,
        "ApplicationThrottled",
        "Application is over its MailboxConcurrency limit.",
        {"Retry-After": "11"},
    )
    env.graph.server.inject("/messages/delta", throttled, times=1)
    env.graph.server.inject("/$value", throttled, times=1)
    assert env.sync(aid) == (3, 0, 0)
    assert waits == [11.0, 11.0]
    msgs = env.messages(aid)
    assert len(msgs) == len({m.message_id for m in msgs}) == 3


def test_token_refresh_uses_the_tenant_and_rotates(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    env.graph.deliver(email, make_raw("x")[0])
    before = env.services.vault.decrypt(env.account(aid).credentials or b"")
    env.oauth.expire_access_tokens(email)  # Graph answers 401 InvalidAuthenticationToken
    count = len(env.oauth.state.token_requests)
    assert env.sync(aid) == (1, 0, 0)
    new_requests = env.oauth.state.token_requests[count:]
    assert [r["path"] for r in new_requests] == [f"/{TENANT}/oauth2/v2.0/token"]  # never /common
    after = env.services.vault.decrypt(env.account(aid).credentials or b"")
    assert after["refresh_token"] != before["refresh_token"]  # rotated and saved
    assert env.oauth.who(f"Bearer {after['access_token']}") == email


def test_expired_refresh_token_needs_reauthorisation(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    env.oauth.revoke(email)  # AADSTS70008 invalid_grant
    with pytest.raises(AuthError) as info:
        env.sync(aid)
    assert REAUTH in str(info.value) and "AADSTS70008" in str(info.value)


def test_expired_client_secret_is_named(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    env.oauth.expire_access_tokens(email)
    env.oauth.state.expired_secrets.add(MS_CLIENT[1])
    try:
        with pytest.raises(AuthError) as info:
            env.sync(aid)
    finally:
        env.oauth.state.expired_secrets.discard(MS_CLIENT[1])
    assert "client secret" in str(info.value) and "AADSTS7000222" in str(info.value)


def test_single_tenant_app_without_tenant_is_a_config_error(api_env: ApiEnv) -> None:
    """Refreshing at /common with a single-tenant app: AADSTS50194 (chatwoot #14325)."""
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    from bot.store.db import session_scope
    from bot.store.models import Account

    with session_scope(env.factory) as s:
        account = s.get_one(Account, aid)
        account.config = {**account.config, "oauth": {**account.config["oauth"], "tenant": ""}}
    env.oauth.expire_access_tokens(email)
    with pytest.raises(ConfigError, match="AADSTS50194"):
        env.sync(aid)


def test_write_back_changes_the_mailbox(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    raw, mid = make_raw("Help")
    iid = env.graph.deliver(email, raw)
    env.sync(aid)
    msg = env.by_mid(aid, mid)
    account = env.account(aid)
    item = env.graph.box(email).items[iid]

    writeback(env.services, account, "mail.set_read", {"message_ids": [msg.id], "read": True})
    assert item.is_read and env.by_mid(aid, mid).is_read
    writeback(env.services, account, "mail.archive", {"conversation_id": msg.conversation_id})
    assert env.graph.folder_of(email, iid) == "archive"
    assert env.where(aid, mid) == {"archive"} and env.conversation(msg.conversation_id).archived
    assert env.sync(aid) == (0, 0, 0) and len(env.messages(aid)) == 1  # the move is no news
    writeback(env.services, account, "mail.unarchive", {"conversation_id": msg.conversation_id})
    assert env.graph.folder_of(email, iid) == "inbox"
    assert not env.conversation(msg.conversation_id).archived
    writeback(env.services, account, "mail.trash", {"conversation_id": msg.conversation_id})
    assert env.graph.folder_of(email, iid) == "deleteditems"
    assert env.conversation(msg.conversation_id).deleted
    env.sync(aid)
    assert env.conversation(msg.conversation_id).deleted and len(env.messages(aid)) == 1


def test_send_mail_once_and_sent_copy_not_duplicated(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    raw, parent = make_raw("Question")
    env.graph.deliver(email, raw)
    env.sync(aid)
    reply, reply_mid = make_raw(
        "Re: Question", sender=email, to="alice@example.org", in_reply_to=parent
    )
    account = env.account(aid)
    send_mail_api(env.services, account, reply, reply_mid, sent_by="U2")
    send_mail_api(env.services, account, reply, reply_mid, sent_by="U2")
    box = env.graph.box(email)
    assert len(box.sent) == 1 and box.sent[0].raw == reply
    stored = env.by_mid(aid, reply_mid)
    assert stored.conversation_id == env.by_mid(aid, parent).conversation_id
    assert env.sync(aid)[0] == 0  # Sent Items delta: the same message, now with its id
    stored = env.by_mid(aid, reply_mid)
    assert stored.provider_id == box.sent[0].id
    assert env.where(aid, reply_mid) == {"sentitems"}
    assert len(env.messages(aid)) == 2


def test_send_finds_an_earlier_send_in_sent_items(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    raw, mid = make_raw("Hi", sender=email, to="bob@example.org")
    iid = env.graph.deliver(email, raw, "sentitems", is_read=True)
    send_mail_api(env.services, env.account(aid), raw, f"<{mid}>")
    assert env.graph.box(email).sent == []
    assert env.by_mid(aid, mid).provider_id == iid


def test_unknown_folder_is_a_settings_problem(api_env: ApiEnv) -> None:
    from bot.providers.errors import FolderNotFound

    env = api_env
    aid, _email = env.add_account(Provider.GRAPH, folders=("inbox", "AAMkNoSuchFolder"))
    with pytest.raises(FolderNotFound):
        env.sync(aid)
