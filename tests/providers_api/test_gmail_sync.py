"""Gmail: full sync, history, expired history, rate limits, tokens, write-back, sending.

google-api-python-client (bundled discovery document) talks to the loopback fake."""

from __future__ import annotations

import pytest

from bot.providers.errors import AuthError
from bot.providers.oauth import REAUTH
from bot.store.models import Provider
from bot.sync.api_sync import send_mail_api, writeback
from tests.fakes import Response
from tests.fakes.gmail_server import gmail_error
from tests.providers_api.conftest import ApiEnv, make_raw


def test_full_then_incremental(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw1, mid1 = make_raw("Order 1")
    env.gmail.deliver(email, raw1)
    raw2, mid2 = make_raw("Re: Order 1", in_reply_to=mid1)
    env.gmail.deliver(email, raw2, labels=("INBOX",))
    assert env.sync(aid) == (2, 0, 0)
    m1, m2 = env.by_mid(aid, mid1), env.by_mid(aid, mid2)
    assert m1.conversation_id == m2.conversation_id
    assert m1.provider_thread_id == env.gmail.box(email).messages[m1.provider_id or ""].thread_id
    assert (m1.is_read, m2.is_read) == (False, True)
    assert env.where(aid, mid1) == {"INBOX"}
    raw3, mid3 = make_raw("Another")
    gid3 = env.gmail.deliver(email, raw3)
    assert env.sync(aid) == (1, 0, 0)
    assert len(env.messages(aid)) == 3
    # Changes made in Gmail: read, archived, deleted for good.
    env.gmail.relabel(email, m1.provider_id or "", remove=("UNREAD",))
    env.gmail.relabel(email, m2.provider_id or "", remove=("INBOX",))
    env.gmail.relabel(email, m1.provider_id or "", remove=("INBOX",))
    env.gmail.delete(email, gid3)
    new, changed, removed = env.sync(aid)
    assert (new, changed, removed) == (0, 1, 1)
    assert env.by_mid(aid, mid1).is_read
    assert env.where(aid, mid1) == {"ARCHIVE"}
    assert env.conversation(m1.conversation_id).archived
    gone = env.by_mid(aid, mid3)
    assert gone.deleted and env.conversation(gone.conversation_id).deleted
    assert env.sync(aid) == (0, 0, 0)  # nothing new: the cursor moved


def test_drafts_and_spam_are_not_imported(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    env.sync(aid)
    env.gmail.deliver(email, make_raw("draft")[0], labels=("DRAFT",))
    env.gmail.deliver(email, make_raw("spam")[0], labels=("SPAM", "UNREAD"))
    assert env.sync(aid) == (0, 0, 0)
    assert env.messages(aid) == []


def test_expired_history_resyncs_without_duplicates(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL, full_sync_limit=50)
    mids = []
    for i in range(3):
        raw, mid = make_raw(f"Before {i}")
        env.gmail.deliver(email, raw)
        mids.append(mid)
    assert env.sync(aid)[0] == 3
    old_cursor = env.cursor(aid, "")
    raw, late = make_raw("While the cursor was stale")
    env.gmail.deliver(email, raw)
    env.gmail.expire_history(email)  # history.list on the old id now answers 404
    new, _changed, _removed = env.sync(aid)
    assert new == 1
    stored = [m.message_id for m in env.messages(aid)]
    assert sorted(stored) == sorted([*mids, late])  # each once
    assert env.cursor(aid, "") != old_cursor
    assert any("history expired" in str(p["problem"]) for p in env.problems())
    env.gmail.deliver(email, make_raw("After")[0])
    assert env.sync(aid) == (1, 0, 0)  # incremental again from the new cursor


def test_full_sync_is_bounded_to_the_newest(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL, full_sync_limit=2)
    mids = [make_raw(f"m{i}") for i in range(4)]
    for raw, _mid in mids:
        env.gmail.deliver(email, raw)
    assert env.sync(aid) == (2, 0, 0)
    assert {m.message_id for m in env.messages(aid)} == {mids[2][1], mids[3][1]}


def test_rate_limit_retry_after_is_honoured(api_env: ApiEnv, waits: list[float]) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    for i in range(3):
        env.gmail.deliver(email, make_raw(f"r{i}")[0])
    limited = gmail_error(
        429, "User-rate limit exceeded.", "rateLimitExceeded", "RESOURCE_EXHAUSTED"
    )
    limited.headers["Retry-After"] = "7"
    env.gmail.server.inject("/messages/", limited, times=2, method="GET")
    assert env.sync(aid) == (3, 0, 0)
    assert waits == [7.0]  # both refused calls of the batch are repeated after one wait
    assert len({m.message_id for m in env.messages(aid)}) == len(env.messages(aid)) == 3


def test_expired_access_token_is_refreshed_and_saved(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    env.gmail.deliver(email, make_raw("x")[0])
    before = env.services.vault.decrypt(env.account(aid).credentials or b"")
    env.oauth.expire_access_tokens(email)  # the API now answers 401 to the stored token
    refreshes = len(env.oauth.state.token_requests)
    assert env.sync(aid) == (1, 0, 0)
    assert len(env.oauth.state.token_requests) == refreshes + 1
    assert env.oauth.state.token_requests[-1]["grant_type"] == "refresh_token"
    after = env.services.vault.decrypt(env.account(aid).credentials or b"")
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] == before["refresh_token"]  # Google keeps it
    assert env.oauth.who(f"Bearer {after['access_token']}") == email


def test_revoked_grant_needs_reauthorisation(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    env.oauth.revoke(email)
    with pytest.raises(AuthError) as info:
        env.sync(aid)
    assert REAUTH in str(info.value)
    assert "invalid_grant" not in str(info.value).split("(")[0]


def test_write_back_changes_gmail(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw, mid = make_raw("Please help")
    gid = env.gmail.deliver(email, raw)
    env.sync(aid)
    msg = env.by_mid(aid, mid)
    box = env.gmail.box(email)
    account = env.account(aid)

    assert writeback(
        env.services, account, "mail.set_read", {"message_ids": [msg.id], "read": True}
    ) == {"written": 1}
    assert "UNREAD" not in box.messages[gid].labels and env.by_mid(aid, mid).is_read
    writeback(env.services, account, "mail.set_read", {"message_ids": [msg.id], "read": False})
    assert "UNREAD" in box.messages[gid].labels and not env.by_mid(aid, mid).is_read

    writeback(env.services, account, "mail.archive", {"conversation_id": msg.conversation_id})
    assert "INBOX" not in box.messages[gid].labels
    assert env.conversation(msg.conversation_id).archived and env.where(aid, mid) == {"ARCHIVE"}
    writeback(
        env.services, account, "mail.archive", {"conversation_id": msg.conversation_id}
    )  # retried row
    writeback(env.services, account, "mail.unarchive", {"conversation_id": msg.conversation_id})
    assert (
        "INBOX" in box.messages[gid].labels and not env.conversation(msg.conversation_id).archived
    )

    writeback(env.services, account, "mail.trash", {"conversation_id": msg.conversation_id})
    assert "TRASH" in box.messages[gid].labels
    assert env.conversation(msg.conversation_id).deleted
    env.sync(aid)  # the sync agrees: nothing comes back
    assert env.conversation(msg.conversation_id).deleted
    assert len(env.messages(aid)) == 1


def test_send_threads_in_gmail_and_is_never_doubled(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw, parent = make_raw("Question")
    gid = env.gmail.deliver(email, raw)
    env.sync(aid)
    reply, reply_mid = make_raw(
        "Re: Question", sender=email, to="alice@example.org", in_reply_to=parent
    )
    account = env.account(aid)
    box = env.gmail.box(email)
    send_mail_api(env.services, account, reply, f"<{reply_mid}>", sent_by="U1")
    send_mail_api(env.services, account, reply, f"<{reply_mid}>", sent_by="U1")  # retried row
    assert len(box.sent) == 1
    assert box.sent[0].thread_id == box.messages[gid].thread_id  # threadId was given
    assert [m.labels for m in box.messages.values() if m.message_id == reply_mid] == [{"SENT"}]
    stored = env.by_mid(aid, reply_mid)
    assert stored.provider_id == box.sent[0].id and stored.sent_by == "U1"
    assert stored.conversation_id == env.by_mid(aid, parent).conversation_id
    assert env.sync(aid)[0] == 0  # the Sent copy seen by history is the same message
    assert len(env.messages(aid)) == 2


def test_send_finds_an_earlier_send_in_gmail(api_env: ApiEnv) -> None:
    """Sent before a crash, never stored: the rfc822msgid: search stops a second send."""
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw, mid = make_raw("Hello", sender=email, to="bob@example.org")
    env.gmail.deliver(email, raw, labels=("SENT",))
    send_mail_api(env.services, env.account(aid), raw, mid)
    assert env.gmail.box(email).sent == []
    assert env.by_mid(aid, mid).provider_id is not None


def test_bad_request_body_is_a_protocol_error(api_env: ApiEnv) -> None:
    env = api_env
    aid, _email = env.add_account(Provider.GMAIL)
    env.gmail.server.inject(
        "/profile", Response.json({"error": {"code": 400, "message": "bad"}}, 400)
    )
    from bot.providers.errors import ProtocolError

    with pytest.raises(ProtocolError):
        env.sync(aid)
