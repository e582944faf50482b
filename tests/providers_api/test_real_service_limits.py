"""Gmail and Microsoft 365 held to what the real services do (providers-review.md), with
fakes that model it: recipients from the MIME headers (Bcc included), size limits and upload
paths, late Sent Items, missing folders, licences, partial consent, messages that keep
failing, history expiry, bounded first rounds, lease heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from typing import Any
from urllib.parse import quote

import pytest

from bot.mail.compose import Draft, OutgoingAttachment, build_mime
from bot.mail.types import Address
from bot.providers.errors import (
    AuthError,
    ConfigError,
    FolderNotFound,
    MessageRejected,
    TransientError,
)
from bot.providers.oauth import exchange_code
from bot.store.models import Provider
from bot.sync.api_sync import MAX_ATTEMPTS, send_mail_api, sync_api_account, writeback
from bot.sync.leases import LeaseLost
from tests.fakes import Response
from tests.fakes.gmail_server import gmail_error
from tests.fakes.graph_server import graph_error
from tests.providers_api.conftest import (
    GOOGLE_CLIENT,
    MS_CLIENT,
    REDIRECT,
    TENANT,
    ApiEnv,
    google_config,
    make_raw,
    microsoft_config,
)

BOTH = [Provider.GMAIL, Provider.GRAPH]
MB = 1024 * 1024


def draft(
    sender: str, *, to: str = "", bcc: str = "", files: list[OutgoingAttachment] | None = None
) -> Draft:
    return Draft(
        from_=Address("Support", sender),
        to=[Address("", to)] if to else [],
        cc=[],
        bcc=[Address("", bcc)] if bcc else [],
        subject="Your order",
        body="Hello.\n",
        message_id=f"limits.{datetime.now(UTC).timestamp()}@mailroom.test",
        attachments=files or [],
    )


def sent_to(env: ApiEnv, provider: Provider) -> list[tuple[str, bytes]]:
    return env.gmail.delivered if provider == Provider.GMAIL else env.graph.delivered


# -- finding 1: Bcc ----------------------------------------------------------------------


@pytest.mark.parametrize("provider", BOTH)
def test_bcc_recipients_get_the_mail_and_do_not_show(api_env: ApiEnv, provider: Provider) -> None:
    env = api_env
    aid, email = env.add_account(provider)
    d = draft(email, to="alice@example.org", bcc="boss@example.org")
    raw = build_mime(d, keep_bcc=True)
    before = len(sent_to(env, provider))
    send_mail_api(env.services, env.account(aid), raw, d.message_id)
    got = dict(sent_to(env, provider)[before:])
    assert set(got) == {"alice@example.org", "boss@example.org"}
    for copy in got.values():  # delivered copies do not reveal the Bcc
        assert b"boss@example.org" not in copy
    assert "Bcc" not in message_from_bytes(build_mime(d), policy=policy.default)  # SMTP path


@pytest.mark.parametrize("provider", BOTH)
def test_a_bcc_only_mail_is_sent(api_env: ApiEnv, provider: Provider) -> None:
    env = api_env
    aid, email = env.add_account(provider)
    d = draft(email, bcc="quiet@example.org")
    before = len(sent_to(env, provider))
    send_mail_api(env.services, env.account(aid), build_mime(d, keep_bcc=True), d.message_id)
    assert [r for r, _ in sent_to(env, provider)[before:]] == ["quiet@example.org"]


# -- finding 2 / point 5: big mail ------------------------------------------------------


@pytest.mark.parametrize("provider", BOTH)
def test_a_30_mb_reply_goes_out(api_env: ApiEnv, provider: Provider) -> None:
    env = api_env
    aid, email = env.add_account(provider)
    blob = bytes(range(256)) * (22 * MB // 256 + 2048)  # base64: a 30 MB message
    d = draft(
        email,
        to="alice@example.org",
        files=[OutgoingAttachment("scan.pdf", "application/pdf", blob)],
    )
    raw = build_mime(d, keep_bcc=True)
    assert len(raw) > 30 * MB  # over the JSON (5 MB) and sendMail (4 MB) request limits
    before = len(sent_to(env, provider))
    send_mail_api(env.services, env.account(aid), raw, d.message_id)
    [(rcpt, copy)] = sent_to(env, provider)[before:]
    assert rcpt == "alice@example.org"
    msg = message_from_bytes(copy, policy=policy.default)
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "scan.pdf" and att.get_payload(decode=True) == blob


def test_gmail_refuses_over_35_mb_before_sending(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw, mid = make_raw("Huge", sender=email, to="bob@example.org", body="x" * (36 * MB))
    with pytest.raises(MessageRejected, match="35 MB"):
        send_mail_api(env.services, env.account(aid), raw, mid)
    assert env.gmail.box(email).sent == []


def test_graph_send_needs_202(api_env: ApiEnv) -> None:
    """Graph has answered 200 to big MIME sendMail without sending: not taken as sent."""
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    raw, mid = make_raw("Quote", sender=email, to="bob@example.org")
    env.graph.server.inject("/sendMail", Response(200, b""))
    markers: list[dict[str, Any]] = []
    with pytest.raises(TransientError, match="202"):
        send_mail_api(env.services, env.account(aid), raw, mid, on_accepted=markers.append)
    assert markers == []


# -- finding 7: no blind resend -----------------------------------------------------------


@pytest.mark.parametrize("provider", BOTH)
def test_a_5xx_on_send_is_not_retried_blindly(api_env: ApiEnv, provider: Provider) -> None:
    env = api_env
    aid, email = env.add_account(provider)
    raw, mid = make_raw("Quote", sender=email, to="bob@example.org")
    if provider == Provider.GMAIL:
        server, path = env.gmail.server, "/messages/send"
        server.inject(path, gmail_error(503, "Backend Error", "backendError", "UNAVAILABLE"))
    else:
        server, path = env.graph.server, "/sendMail"
        server.inject(path, graph_error(504, "GatewayTimeout", "Gateway timeout."))
    before = sum(1 for r in server.requests if r.path.endswith(path))
    with pytest.raises(TransientError):
        send_mail_api(env.services, env.account(aid), raw, mid)
    # One try only: the outbox retries later, after checking the mailbox's Sent.
    assert sum(1 for r in server.requests if r.path.endswith(path)) == before + 1


def test_graph_sent_items_filed_late_never_resends(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    env.graph.sent_lag = True
    try:
        raw, mid = make_raw("Quote", sender=email, to="bob@example.org")
        markers: list[dict[str, Any]] = []

        def fail_after(info: dict[str, Any]) -> None:
            markers.append(info)
            raise RuntimeError("the worker died after the 202")

        with pytest.raises(RuntimeError):
            send_mail_api(env.services, env.account(aid), raw, mid, on_accepted=fail_after)
        # The retry: Sent Items is still empty; the accepted marker prevents a second send.
        send_mail_api(env.services, env.account(aid), raw, mid, accepted={**markers[0], "at": 1})
        assert [r for r, _ in env.graph.delivered].count("bob@example.org") >= 1
        assert len(env.graph.box(email).sent) == 1
        env.graph.file_sent(email)
        env.sync(aid)
        assert env.where(aid, mid) == {"sentitems"}
    finally:
        env.graph.sent_lag = False


# -- findings 8, 12: missing folders, licences --------------------------------------------


def test_a_missing_archive_folder_neither_fails_the_sync_nor_loses_mail(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    env.graph.box(email).missing.add("archive")
    raw, mid = make_raw("Where is my order")
    env.graph.deliver(email, raw)
    assert env.sync(aid)[0] == 1  # inbox and sent items synced
    assert any("'archive' does not exist" in str(p["problem"]) for p in env.problems())
    msg = env.by_mid(aid, mid)
    with pytest.raises(FolderNotFound):
        writeback(
            env.services, env.account(aid), "mail.archive", {"conversation_id": msg.conversation_id}
        )
    assert env.where(aid, mid) == {"inbox"}  # not "gone"
    assert env.by_mid(aid, mid).deleted is False
    assert env.sync(aid) == (0, 0, 0)  # and the next run is fine too


def test_a_user_without_exchange_online_is_told_so(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    env.graph.unlicensed.add(email)
    with pytest.raises(ConfigError, match="Exchange Online"):
        env.sync(aid)


# -- finding 6: partial consent ------------------------------------------------------------


def test_unticked_gmail_permission_is_refused(api_env: ApiEnv) -> None:
    env = api_env
    env.oauth.state.unticked["picky@gmail.test"] = {"https://www.googleapis.com/auth/gmail.modify"}
    code = env.oauth.issue_code("google", GOOGLE_CLIENT[0], "picky@gmail.test", REDIRECT)
    with pytest.raises(AuthError, match="tick"):
        exchange_code("gmail", google_config(env.oauth), code, REDIRECT)


def test_graph_without_mail_send_consent_is_refused(api_env: ApiEnv) -> None:
    env = api_env
    env.oauth.state.unticked["nosend@contoso.test"] = {"https://graph.microsoft.com/Mail.Send"}
    code = env.oauth.issue_code("microsoft", MS_CLIENT[0], "nosend@contoso.test", REDIRECT, TENANT)
    with pytest.raises(AuthError, match=r"mail\.send"):
        exchange_code("graph", microsoft_config(env.oauth), code, REDIRECT)


# -- finding 10: one message the provider keeps refusing -------------------------------------


@pytest.mark.parametrize("provider", BOTH)
def test_a_message_the_provider_keeps_failing_is_quarantined(
    api_env: ApiEnv, provider: Provider, waits: list[float]
) -> None:
    env = api_env
    aid, email = env.add_account(provider)
    bad_raw, bad_mid = make_raw("Corrupt")
    good_raw, good_mid = make_raw("Fine")
    if provider == Provider.GMAIL:
        bad = env.gmail.deliver(email, bad_raw)
        env.gmail.deliver(email, good_raw)
        fault = env.gmail.server.inject(
            f"/messages/{bad}",
            gmail_error(500, "Backend Error", "backendError", "INTERNAL"),
            times=10**6,
        )
        cursor = ""
    else:
        bad = env.graph.deliver(email, bad_raw)
        env.graph.deliver(email, good_raw)
        fault = env.graph.server.inject(
            f"/messages/{quote(bad, safe='')}/$value",
            graph_error(500, "ErrorItemCorrupt", "The item is corrupt."),
            times=10**6,
        )
        cursor = "inbox"
    try:
        assert env.sync(aid)[0] == 1  # the good one is stored at once
        assert env.by_mid(aid, good_mid)
        for _ in range(MAX_ATTEMPTS + 1):
            env.sync(aid)
        assert any("quarantined" in str(p["problem"]) for p in env.problems())
        assert bad in (env.cursor(aid, cursor) or "")
        # The account keeps syncing: new mail still arrives.
        later_raw, _later_mid = make_raw("Later")
        if provider == Provider.GMAIL:
            env.gmail.deliver(email, later_raw)
        else:
            env.graph.deliver(email, later_raw)
        assert env.sync(aid)[0] == 1
        assert not any(m.message_id == bad_mid for m in env.messages(aid))
    finally:
        fault.times = 0


# -- finding 11: Gmail resync after expired history -------------------------------------


def test_mail_deleted_while_history_was_gone_is_dropped(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw1, mid1 = make_raw("Stays")
    raw2, mid2 = make_raw("Deleted meanwhile")
    env.gmail.deliver(email, raw1)
    gone = env.gmail.deliver(email, raw2)
    env.sync(aid)
    assert env.where(aid, mid2) == {"INBOX"}
    env.gmail.delete(email, gone)
    env.gmail.expire_history(email)  # the delete left no history record we can read
    env.sync(aid)
    assert env.where(aid, mid2) == set()
    assert env.by_mid(aid, mid2).deleted is True
    assert env.where(aid, mid1) == {"INBOX"}


def test_gmail_trash_label_wins_over_inbox(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw, mid = make_raw("Bin me")
    gid = env.gmail.deliver(email, raw)
    env.sync(aid)
    env.gmail.relabel(email, gid, add=("TRASH",))  # INBOX + TRASH during propagation
    env.sync(aid)
    assert env.where(aid, mid) == set()


# -- findings 3, 4: polite first syncs -------------------------------------------------------


def test_graph_first_round_reads_only_recent_mail(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH, first_sync_days=30)
    old_raw, _old_mid = make_raw("Ancient")
    new_raw, new_mid = make_raw("Recent")
    env.graph.deliver(email, old_raw, received=datetime.now(UTC) - timedelta(days=400))
    env.graph.deliver(email, new_raw)
    assert env.sync(aid)[0] == 1
    assert {m.message_id for m in env.messages(aid)} == {new_mid}


@pytest.mark.parametrize("provider", BOTH)
def test_the_lease_is_renewed_per_batch_and_a_lost_lease_stops_the_run(
    api_env: ApiEnv, provider: Provider
) -> None:
    env = api_env
    aid, email = env.add_account(provider, page_size=2)
    for n in range(5):
        raw, _ = make_raw(f"Mail {n}")
        if provider == Provider.GMAIL:
            env.gmail.deliver(email, raw)
        else:
            env.graph.deliver(email, raw)
    beats: list[str] = []

    def heartbeat(where: str, n: int) -> None:
        beats.append(where)
        raise LeaseLost("taken over")

    with pytest.raises(LeaseLost):
        sync_api_account(
            env.services,
            env.factory,
            aid,
            env.run_ids[-1] if env.run_ids else 0,
            after_batch=heartbeat,
        )
    assert len(beats) == 1  # stopped at the first heartbeat, not after the whole mailbox


def test_gmail_first_sync_fetches_in_batches_within_the_quota(
    api_env: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """messages.get goes in HTTP batches of at most 50 (250 quota units), paced to 250
    units a second on the client's clock (a virtual one here: SLEEP advances it)."""
    from bot.providers import gmail as gmail_mod

    clock = [0.0]
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(gmail_mod, "SLEEP", sleep)
    monkeypatch.setattr(gmail_mod, "CLOCK", lambda: clock[0])
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    for n in range(120):
        env.gmail.deliver(email, make_raw(f"Order {n}")[0])
    before = len(env.gmail.batches)
    single_gets = sum(
        1 for r in env.gmail.server.requests if "/messages/" in r.path and r.method == "GET"
    )
    assert env.sync(aid)[0] == 120
    assert env.gmail.batches[before:] == [50, 50, 20]
    assert single_gets == sum(
        1 for r in env.gmail.server.requests if "/messages/" in r.path and r.method == "GET"
    )  # no one-by-one messages.get
    # 600 units: the third batch starts no earlier than 2 s in (250 units per second).
    assert clock[0] == pytest.approx(2.0)


def test_graph_requests_of_one_mailbox_share_four_slots(api_env: ApiEnv) -> None:
    """Outlook allows 4 concurrent requests per mailbox: sync, write-back and send clients of
    one account share the same slots; with none free, a request waits for one."""
    import threading

    from bot.providers import graph as graph_mod
    from bot.sync.api_accounts import graph_client

    env = api_env
    aid, _email = env.add_account(Provider.GRAPH)
    account = env.account(aid)
    with graph_client(env.services, account) as a, graph_client(env.services, account) as b:
        slots = graph_mod.mailbox_slots(f"account:{aid}")
        assert a._slots is slots and b._slots is slots
        for _ in range(graph_mod.MAX_CONCURRENT):
            assert slots.acquire(blocking=False)
        try:
            done = threading.Event()

            def call() -> None:
                a.me()
                done.set()

            worker = threading.Thread(target=call)
            worker.start()
            assert not done.wait(0.3)  # all four slots taken: the request waits
        finally:
            for _ in range(graph_mod.MAX_CONCURRENT):
                slots.release()
        worker.join(10)
        assert done.is_set()


# -- findings 15, 20: errors that reconnecting does not fix; purged threads ---------------


def test_a_workspace_block_and_a_send_as_refusal_say_what_to_do(api_env: ApiEnv) -> None:
    env = api_env
    aid, _email = env.add_account(Provider.GMAIL)
    env.gmail.server.inject(
        "/profile",
        gmail_error(403, "Domain policy has disabled access", "domainPolicy", "PERMISSION_DENIED"),
    )
    with pytest.raises(ConfigError, match="Trusted"):
        env.sync(aid)
    gid, _ = env.add_account(Provider.GRAPH)
    raw, mid = make_raw("Quote", sender="ceo@contoso.test", to="bob@example.org")
    with pytest.raises(MessageRejected, match="ErrorSendAsDenied"):
        send_mail_api(env.services, env.account(gid), raw, mid)


def test_a_reply_to_a_thread_gmail_purged_is_sent_unthreaded(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw, mid = make_raw("Please help")
    gid = env.gmail.deliver(email, raw)
    env.sync(aid)
    env.gmail.delete(email, gid)  # purged from Trash: its thread id is gone
    reply, rmid = make_raw("Re: Please help", sender=email, to="alice@example.org", in_reply_to=mid)
    send_mail_api(env.services, env.account(aid), reply, rmid)
    assert [r for r, _ in env.gmail.delivered][-1] == "alice@example.org"


def test_gmail_retry_after_in_the_message_is_honoured(api_env: ApiEnv, waits: list[float]) -> None:
    """Gmail rarely sends Retry-After; its 429 text says "Retry after <RFC 3339>"."""
    env = api_env
    aid, _email = env.add_account(Provider.GMAIL)
    when = (datetime.now(UTC) + timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    env.gmail.server.inject(
        "/profile",
        gmail_error(
            429,
            f"User-rate limit exceeded.  Retry after {when}",
            "rateLimitExceeded",
            "RESOURCE_EXHAUSTED",
        ),
    )
    env.sync(aid)
    assert len(waits) == 1 and 30 < waits[0] <= 40  # not the 1 s backoff


def test_an_interrupted_fresh_graph_round_still_sweeps(api_env: ApiEnv) -> None:
    """Finding 19: a first round resumed from its saved next link used to skip the sweep."""
    env = api_env
    aid, email = env.add_account(Provider.GRAPH, page_size=2, folders=("inbox",))
    ids = []
    for n in range(5):
        raw, mid = make_raw(f"Mail {n}")
        ids.append((env.graph.deliver(email, raw), mid))
    env.sync(aid)
    gone_iid, gone_mid = ids[0]
    env.graph.box(email).items.pop(gone_iid)  # vanished with no change record
    env.graph.expire_delta_tokens(email)

    def crash(_where: str, _n: int) -> None:
        raise LeaseLost("the worker stopped after one page")

    with pytest.raises(LeaseLost):
        sync_api_account(env.services, env.factory, aid, 0, after_batch=crash)
    env.sync(aid)
    assert env.where(aid, gone_mid) == set()
    assert env.where(aid, ids[4][1]) == {"inbox"}
