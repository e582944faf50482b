"""Push notifications (issue 18, point 3): Gmail users.watch through a Pub/Sub push signed by
Google, Graph change notifications with the validation handshake and clientState; renewals,
stop/delete on removal, and polling every 60 s without push.

Mailroom's real WSGI app serves /push/* on loopback; the fakes push to it over HTTP, signed
with a test key whose certificate the Gmail fake serves in Google's certs format."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.store.db import session_scope
from bot.store.models import Account, Provider, PushChannel, utcnow
from bot.store.push import make_due, notified_since
from bot.sync.engine import sync_account
from bot.sync.push import PushKeeper
from bot.sync.scheduler import SyncScheduler
from tests.appfixtures import Mailroom
from tests.fakes.gmail_server import FakeGmail, make_signing_key
from tests.fakes.graph_server import FakeGraph
from tests.fakes.oauth_server import FakeOAuth
from tests.providers_api.conftest import ApiEnv, make_raw

TOPIC = "projects/mailroom-test/topics/gmail"
CHANNEL = "CINBOX"


@dataclass
class PushEnv:
    mailroom: Mailroom
    api: ApiEnv
    base: str

    @property
    def gmail(self) -> FakeGmail:
        return self.api.gmail

    @property
    def graph(self) -> FakeGraph:
        return self.api.graph

    def add(self, provider: Provider) -> tuple[int, str]:
        """An API account posting to #inbox, synced once, then not due for an hour: only a
        push can make it run before then."""
        aid, email = self.api.add_account(provider)
        with session_scope(self.api.factory) as s:
            account = s.get_one(Account, aid)
            account.channel_id = CHANNEL
            account.announce_after = None
        sync_account(self.api.services, aid)
        self.not_due(aid)
        return aid, email

    def not_due(self, aid: int) -> None:
        with session_scope(self.api.factory) as s:
            account = s.get_one(Account, aid)
            account.sync_interval_seconds = 3600
            account.next_sync_at = utcnow() + timedelta(hours=1)

    def due(self, aid: int) -> bool:
        return (self.api.account(aid).next_sync_at or utcnow()) <= utcnow()

    def channel(self, aid: int) -> PushChannel | None:
        with session_scope(self.api.factory) as s:
            return s.scalar(select(PushChannel).where(PushChannel.account_id == aid))

    def keeper(self, clock: Any = utcnow) -> PushKeeper:
        return PushKeeper(self.api.services, owner="test-keeper", clock=clock)

    def slack_texts(self) -> str:
        return json.dumps(self.mailroom.fake.messages(CHANNEL))

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> Any:
        req = urllib.request.Request(self.base + path, body, headers or {}, method="POST")
        try:
            return urllib.request.urlopen(req, timeout=10)
        except urllib.error.HTTPError as exc:
            return exc


@pytest.fixture
def push(
    mailroom: Mailroom, oauth: FakeOAuth, gmail_fake: FakeGmail, graph_fake: FakeGraph
) -> Iterator[PushEnv]:
    base = mailroom.url.removesuffix("/slack/events")
    services = mailroom.services
    services.settings = replace(
        services.settings,
        public_url=base,
        gmail_push_topic=TOPIC,
        gmail_push_service_account=gmail_fake.pubsub.service_account,
        google_certs_url=gmail_fake.pubsub.certs_url,
        graph_push=True,
    )
    gmail_fake.pubsub.push_url = base + "/push/gmail"
    try:
        yield PushEnv(mailroom, ApiEnv(services, oauth, gmail_fake, graph_fake), base)
    finally:
        gmail_fake.pubsub.push_url = None
        graph_fake.clock = lambda: datetime.now(UTC)


def _wait_for_slack(env: PushEnv, subject: str) -> None:
    """Run the outbox until the post shows (bounded; no timing is asserted)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and subject not in env.slack_texts():
        env.mailroom.run_outbox(timeout=1)
        time.sleep(0.1)


def test_gmail_push_brings_new_mail_to_slack_without_polling(push: PushEnv) -> None:
    env = push
    aid, email = env.add(Provider.GMAIL)
    assert env.keeper().tick()["opened"] == 1
    watch = env.gmail.watches[email]
    assert watch["topic"] == TOPIC and watch["labels"] == {"INBOX", "SENT"}
    scheduler = SyncScheduler(env.api.services, tick_seconds=0.2, idle=False)
    scheduler.start()
    try:
        raw, _mid = make_raw("Pushed through Pub/Sub")
        assert "Pushed through Pub/Sub" not in env.slack_texts()
        env.gmail.deliver(email, raw)  # Gmail publishes; Pub/Sub pushes to Mailroom
        assert env.gmail.pubsub.sent[-1][1] == 204
        _wait_for_slack(env, "Pushed through Pub/Sub")
    finally:
        scheduler.stop()
    assert "Pushed through Pub/Sub" in env.slack_texts()
    # It came from the push: the schedule alone would have waited an hour.
    assert env.api.account(aid).sync_interval_seconds == 3600


def test_gmail_forged_or_replayed_push_is_refused(push: PushEnv) -> None:
    env = push
    aid, email = env.add(Provider.GMAIL)
    env.keeper().tick()
    pubsub = env.gmail.pubsub
    history = env.gmail.box(email).history_id + 1
    envelope = pubsub.envelope(email, history)
    other_key = make_signing_key("attacker")[0]
    forged = {
        "no token": None,
        "bad signature": pubsub.token(private_key=other_key),
        "wrong audience": pubsub.token(audience="https://elsewhere.example/push/gmail"),
        "other service account": pubsub.token(email="evil@attacker.iam.gserviceaccount.com"),
        "wrong issuer": pubsub.token(issuer="https://evil.example"),
        "expired": pubsub.token(lifetime=-120),
    }
    for what, token in forged.items():
        status = pubsub.post(envelope, token)
        assert status in (401, 403), what
        assert not env.due(aid), what
    token = pubsub.token()
    assert pubsub.post(envelope, token) == 204
    assert env.due(aid)
    env.not_due(aid)
    assert pubsub.post(envelope, token) == 204  # the same push again (a replay)
    assert pubsub.post(pubsub.envelope(email, history - 5), pubsub.token()) == 204  # older
    assert not env.due(aid)
    assert pubsub.post(pubsub.envelope("nobody@gmail.test", history + 9), token) == 204
    channel = env.channel(aid)
    assert channel is not None and channel.history_id == history


def test_graph_notification_brings_new_mail_to_slack(push: PushEnv) -> None:
    env = push
    aid, email = env.add(Provider.GRAPH)
    assert env.keeper().tick()["opened"] == 1  # the fake validated /push/graph first
    (sub,) = [s for s in env.graph.subscriptions.values() if s["owner"] == email]
    assert sub["notificationUrl"] == env.base + "/push/graph"
    assert sub["lifecycleNotificationUrl"] == env.base + "/push/graph/lifecycle"
    assert sub["resource"] == "me/mailFolders('inbox')/messages"
    assert sub["changeType"] == "created,updated,deleted"
    channel = env.channel(aid)
    assert channel is not None and channel.external_id == sub["id"]
    assert sub["clientState"].encode() not in (channel.client_state or b"")  # stored encrypted
    env.not_due(aid)
    scheduler = SyncScheduler(env.api.services, tick_seconds=0.2, idle=False)
    scheduler.start()
    try:
        raw, _mid = make_raw("Pushed by Graph")
        env.graph.deliver(email, raw)
        assert env.graph.notifications[-1][2] == 202
        _wait_for_slack(env, "Pushed by Graph")
    finally:
        scheduler.stop()
    assert "Pushed by Graph" in env.slack_texts()


def test_graph_handshake_client_state_and_lifecycle(push: PushEnv) -> None:
    env = push
    aid, email = env.add(Provider.GRAPH)
    keeper = env.keeper()
    keeper.tick()
    env.not_due(aid)
    resp = env.post("/push/graph?validationToken=Validation%3A%20abc%20123", b"")
    assert resp.status == 200 and resp.read() == b"Validation: abc 123"
    assert resp.headers["Content-Type"].startswith("text/plain")
    (sid,) = [s["id"] for s in env.graph.subscriptions.values() if s["owner"] == email]

    def note(**item: Any) -> Any:
        body = {"value": [{"subscriptionId": sid, "changeType": "created", **item}]}
        return env.post(
            "/push/graph", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )

    assert note(clientState="forged").status == 202
    assert note().status == 202  # no clientState at all
    assert note(subscriptionId="sub-unknown", clientState="x").status == 202
    assert env.graph.lifecycle(sid, "missed", client_state="forged") == 202
    assert not env.due(aid)  # nothing believed, nothing synced
    # Lifecycle events with the right clientState.
    assert env.graph.lifecycle(sid, "missed") == 202
    assert env.due(aid)
    env.not_due(aid)
    assert env.graph.lifecycle(sid, "reauthorizationRequired") == 202
    assert keeper.tick()["renewed"] == 1
    assert env.graph.subscriptions[sid].get("renewals") == 1
    assert env.graph.lifecycle(sid, "subscriptionRemoved") == 202
    assert env.due(aid)  # changes may have been missed meanwhile
    assert keeper.tick()["renewed"] == 1
    (new_sid,) = [s["id"] for s in env.graph.subscriptions.values() if s["owner"] == email]
    assert new_sid != sid
    channel = env.channel(aid)
    assert channel is not None and channel.external_id == new_sid
    assert note(clientState=env.graph.subscriptions[new_sid]["clientState"]).status == 202


def test_renewed_before_expiry_with_an_injected_clock(push: PushEnv) -> None:
    env = push
    now = [utcnow()]
    env.graph.clock = lambda: now[0]
    keeper = env.keeper(clock=lambda: now[0])
    gaid, gmail_email = env.add(Provider.GMAIL)
    maid, ms_email = env.add(Provider.GRAPH)
    assert keeper.tick()["opened"] == 2
    watches = lambda: sum(  # noqa: E731
        1 for r in env.gmail.server.requests if r.path.endswith("/watch")
    )
    first = watches()
    (sid,) = [s["id"] for s in env.graph.subscriptions.values() if s["owner"] == ms_email]
    graph_expiry = env.channel(maid).expires_at  # type: ignore[union-attr]
    assert graph_expiry is not None and graph_expiry - now[0] <= timedelta(minutes=10_080)
    now[0] += timedelta(hours=12)
    assert keeper.tick() == {"opened": 0, "renewed": 0, "closed": 0, "failed": 0}
    now[0] += timedelta(hours=12, seconds=1)  # a day: the Gmail watch (7 days) is renewed
    assert keeper.tick()["renewed"] == 1
    assert watches() == first + 1
    assert env.graph.subscriptions[sid].get("renewals") is None
    now[0] = graph_expiry - timedelta(days=3)  # past half-life, before expiry
    done = keeper.tick()
    assert env.graph.subscriptions[sid].get("renewals") == 1
    assert done["renewed"] >= 1
    renewed = env.channel(maid)
    assert renewed is not None and renewed.expires_at is not None
    assert renewed.expires_at > graph_expiry
    assert env.channel(gaid) is not None and gmail_email in env.gmail.watches


def test_stopped_on_pause_and_removal(push: PushEnv) -> None:
    from bot.handlers.views.accounts import remove, set_paused

    env = push
    services = env.api.services
    gaid, gmail_email = env.add(Provider.GMAIL)
    maid, ms_email = env.add(Provider.GRAPH)
    keeper = env.keeper()
    keeper.tick()
    assert gmail_email in env.gmail.watches
    assert any(s["owner"] == ms_email for s in env.graph.subscriptions.values())
    set_paused(services, maid, True, "UADMIN")
    assert keeper.tick()["closed"] == 1
    assert not any(s["owner"] == ms_email for s in env.graph.subscriptions.values())
    assert env.channel(maid) is None
    set_paused(services, maid, False, "UADMIN")
    assert keeper.tick()["opened"] == 1
    assert any(s["owner"] == ms_email for s in env.graph.subscriptions.values())
    assert remove(services, gaid, "UADMIN") == gmail_email
    assert gmail_email not in env.gmail.watches  # users.stop
    assert remove(services, maid, "UADMIN") == ms_email
    assert not any(s["owner"] == ms_email for s in env.graph.subscriptions.values())
    with session_scope(env.api.factory) as s:
        assert s.scalars(select(PushChannel)).all() == []
    # A push for the removed mailbox changes nothing (and is acknowledged).
    assert (
        env.gmail.pubsub.post(
            env.gmail.pubsub.envelope(gmail_email, 99_999), env.gmail.pubsub.token()
        )
        == 204
    )


def test_without_push_api_accounts_are_polled_every_60_seconds(api_env: ApiEnv) -> None:
    env = api_env  # settings without any push configuration
    aid, _email = env.add_account(Provider.GRAPH)
    with session_scope(env.factory) as s:
        s.get_one(Account, aid).sync_interval_seconds = 300
    sync_account(env.services, aid)
    account = env.account(aid)
    assert account.next_sync_at and account.last_sync_at
    assert account.next_sync_at - account.last_sync_at == timedelta(seconds=60)
    # With a live push channel the account's own interval applies.
    with session_scope(env.factory) as s:
        s.add(
            PushChannel(
                account_id=aid, kind="graph_subscription", expires_at=utcnow() + timedelta(days=2)
            )
        )
    sync_account(env.services, aid)
    account = env.account(aid)
    assert account.next_sync_at and account.last_sync_at
    assert account.next_sync_at - account.last_sync_at == timedelta(seconds=300)


def test_a_push_during_a_run_is_seen_after_it(api_env: ApiEnv) -> None:
    """The scheduler reruns an account whose push arrived after its run started, in any
    process: the mark is in the store."""
    env = api_env
    aid, _email = env.add_account(Provider.GMAIL)
    started = utcnow()
    assert not notified_since(env.factory, aid, started)
    with session_scope(env.factory) as s:
        s.add(PushChannel(account_id=aid, kind="gmail_watch"))
    with session_scope(env.factory) as s:
        make_due(s, aid, started + timedelta(seconds=1))
    assert notified_since(env.factory, aid, started)
    assert not notified_since(env.factory, aid, started + timedelta(seconds=2))


def test_renewals_run_in_one_replica_at_a_time(push: PushEnv) -> None:
    env = push
    env.add(Provider.GMAIL)
    first, second = env.keeper(), PushKeeper(env.api.services, owner="other-replica")
    assert first.tick()["opened"] == 1
    with session_scope(env.api.factory) as s:  # make the watch due for renewal
        s.scalars(select(PushChannel)).one().renew_after = utcnow() - timedelta(seconds=1)
    before = len(env.gmail.server.requests)
    assert second.tick() == {"opened": 0, "renewed": 0, "closed": 0, "failed": 0}
    assert len(env.gmail.server.requests) == before  # the other replica did nothing
    assert first.tick()["renewed"] == 1


def test_gmail_pull_delivery_without_a_public_url(push: PushEnv) -> None:
    """Pull delivery: no endpoint is reached; the worker pulls, marks the account due, and
    acknowledges only afterwards; a pulled duplicate changes nothing."""
    import threading

    import requests

    from bot.sync.push import GmailPuller
    from tests.providers_api.conftest import GOOGLE_CLIENT

    env = push
    services = env.api.services
    services.settings = replace(
        services.settings,
        gmail_push_service_account=None,  # no push endpoint: pull only
        gmail_pull_subscription="projects/mailroom-test/subscriptions/gmail-pull",
        pubsub_api_url=env.gmail.server.url + "/v1",
    )
    env.gmail.pubsub.push_url = None
    env.gmail.pubsub.pull = True
    http = requests.Session()
    token = env.api.oauth.grant("google", GOOGLE_CLIENT[0], "puller@mailroom-test.iam")
    http.headers["Authorization"] = f"Bearer {token['access_token']}"
    try:
        aid, email = env.add(Provider.GMAIL)
        assert env.keeper().tick()["opened"] == 1  # the watch needs only the topic
        puller = GmailPuller(services, session=http)
        assert puller.pull_once() == 0
        raw, _mid = make_raw("Pulled from Pub/Sub")
        env.gmail.deliver(email, raw)
        assert len(env.gmail.pubsub.queue) == 1 and not env.due(aid)
        # Through the endpoint it would be refused: push is not configured.
        assert env.post("/push/gmail", b"{}", {"Authorization": "Bearer x"}).status == 404
        scheduler = SyncScheduler(services, tick_seconds=0.2, idle=False)
        stop = threading.Event()
        thread = threading.Thread(target=puller.run_forever, args=(stop,), daemon=True)
        scheduler.start()
        thread.start()
        try:
            _wait_for_slack(env, "Pulled from Pub/Sub")
        finally:
            stop.set()
            scheduler.stop()
            thread.join(timeout=30)
        assert "Pulled from Pub/Sub" in env.slack_texts()
        assert env.gmail.pubsub.queue == {}  # acknowledged
        env.not_due(aid)
        channel = env.channel(aid)
        assert channel is not None and channel.history_id is not None
        stale = env.gmail.pubsub.envelope(email, channel.history_id)["message"]
        env.gmail.pubsub.queue["ack-dup"] = stale  # Pub/Sub delivers at least once
        assert puller.pull_once() == 1 and env.gmail.pubsub.queue == {}
        assert not env.due(aid)
    finally:
        env.gmail.pubsub.pull = False
        env.gmail.pubsub.queue.clear()


def test_gmail_push_signed_with_a_rotated_key_is_accepted(
    push: PushEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Google rotates its signing keys: a push naming a key missing from the cached list
    refetches it (a push with an unknown key still fails after the refetch)."""
    from bot.sync import push as push_mod

    env = push
    aid, email = env.add(Provider.GMAIL)
    env.keeper().tick()
    pubsub = env.gmail.pubsub
    history = env.gmail.box(email).history_id
    assert pubsub.post(pubsub.envelope(email, history + 1), pubsub.token()) == 204  # cached
    monkeypatch.setattr(push_mod, "_REFETCH_SECONDS", 0.0)
    pubsub.rotate()
    env.not_due(aid)
    assert pubsub.post(pubsub.envelope(email, history + 2), pubsub.token()) == 204
    assert env.due(aid)


def test_a_push_runs_the_in_process_worker_at_once(push: PushEnv) -> None:
    """`mailroom serve` with its worker hands a push straight to the scheduler: the sync
    starts without waiting for any tick (this scheduler ticks once an hour)."""
    from bot.web import make_wsgi_app
    from tests.slackfake.serve import serve_wsgi

    env = push
    services = env.api.services
    aid, email = env.add(Provider.GMAIL)
    env.keeper().tick()
    scheduler = SyncScheduler(services, tick_seconds=3600, idle=False)
    scheduler.start()
    wsgi = make_wsgi_app(env.mailroom.app, services, on_push=scheduler.trigger)
    try:
        with serve_wsgi(wsgi, "/push/gmail") as url:
            env.gmail.pubsub.push_url = url
            env.gmail.pubsub.audience = env.base + "/push/gmail"  # the configured audience
            raw, mid = make_raw("Straight to the worker")
            env.gmail.deliver(email, raw)
            assert env.gmail.pubsub.sent[-1][1] == 204
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and mid not in {
                m.message_id for m in env.api.messages(aid)
            }:
                time.sleep(0.1)
    finally:
        env.gmail.pubsub.audience = None
        scheduler.stop()
    assert mid in {m.message_id for m in env.api.messages(aid)}


def test_a_shared_mailbox_subscribes_through_users(push: PushEnv) -> None:
    """A shared Microsoft 365 mailbox's subscription is on users/{mailbox}/… (the Graph
    client's root), made by the delegate; mail delivered to the shared mailbox notifies."""
    from tests.providers_api.test_shared_mailbox import connect_shared, shared_pair

    env = push
    shared, agent = shared_pair()
    env.graph.full_access[shared] = {agent}
    aid = connect_shared(env.api, shared, agent)
    with session_scope(env.api.factory) as s:
        account = s.get_one(Account, aid)
        account.channel_id = CHANNEL
        account.announce_after = None
    sync_account(env.api.services, aid)
    env.not_due(aid)
    assert env.keeper().tick()["opened"] == 1
    (sub,) = [s for s in env.graph.subscriptions.values() if shared in str(s["resource"])]
    assert sub["resource"] == f"users/{shared}/mailFolders('inbox')/messages"
    env.not_due(aid)  # opening asks for one sync (changes may predate the subscription)
    env.graph.deliver(agent, make_raw("The agent's own mail")[0])
    assert not env.due(aid)
    env.graph.deliver(shared, make_raw("For support")[0])
    assert env.graph.notifications[-1][2] == 202
    assert env.due(aid)
