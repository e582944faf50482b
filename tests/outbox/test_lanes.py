"""Lanes: one row at a time per lane, lanes side by side; pacing and 429s stay in their lane;
waiting on a failed row ends."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from sqlalchemy import select, update

from bot.compose import outbox as compose_outbox
from bot.outbox.dispatch import MAX_ATTEMPTS, Dispatcher, Registry, RetryLater
from bot.outbox.slack_handlers import call_slack
from bot.store.db import SessionFactory, session_scope
from bot.store.models import Outbox, OutboxLane, OutboxStatus, utcnow
from bot.store.outbox import claim_due, enqueue, lane_for
from tests.mailservers.smtp_server import SmtpServer
from tests.outbox.conftest import queue_send, sends_of, smtp_account
from tests.outbox.test_dispatch import _services
from tests.slackfake.server import FakeSlack
from tests.sync.conftest import Env


def test_lanes_of_each_kind() -> None:
    assert lane_for("mail.send", account_id=3, channel_id="C1") == "send:3"
    assert lane_for("mail.archive", account_id=3, channel_id=None) == "mailbox:3"
    assert lane_for("slack.post_parent", account_id=3, channel_id="C1") == "slack:C1"
    assert lane_for("slack.dm", account_id=None, channel_id=None, payload={"user_id": "U1"}) == (
        "slack:dm:U1"
    )


def test_a_lane_runs_its_oldest_row_and_one_at_a_time(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        for n in range(3):
            enqueue(s, kind="slack.post_parent", key=f"a{n}", payload={}, channel_id="CA")
        enqueue(s, kind="slack.post_parent", key="b0", payload={}, channel_id="CB")
        enqueue(s, kind="mail.send", key="s0", payload={}, account_id=None)
    with session_scope(session_factory) as s:
        first = claim_due(s, owner="w1", lease_seconds=60, limit=10)
    assert sorted(r.key for r in first) == ["a0", "b0", "s0"]
    # Another worker finds lanes CA and CB busy; nothing else is due.
    with session_scope(session_factory) as s:
        assert claim_due(s, owner="w2", lease_seconds=60, limit=10) == []
    # The running row's worker died: its lease ran out, the lane's oldest row is taken over.
    later = utcnow() + timedelta(seconds=61)
    with session_scope(session_factory) as s:
        again = claim_due(s, owner="w2", lease_seconds=60, limit=10, now=later)
    assert sorted(r.key for r in again) == ["a0", "b0", "s0"]


def test_a_429_pauses_only_its_own_lane(session_factory: SessionFactory) -> None:
    ran: list[str] = []

    def post(ctx: Any, row: Outbox) -> None:
        ran.append(row.key)
        if row.key == "a0":
            raise RetryLater("Slack rate limit (429)", after_seconds=30)

    registry = Registry()
    registry.register("test.post", post, paced_by_channel=True)
    with session_scope(session_factory) as s:
        for key, channel in (("a0", "CA"), ("a1", "CA"), ("b0", "CB"), ("b1", "CB")):
            enqueue(s, kind="test.post", key=key, payload={}, channel_id=channel)
    dispatcher = Dispatcher(
        _services(session_factory), WebClient(token="x"), registry, channel_interval=0
    )
    dispatcher.run_until_idle(10)
    dispatcher.close()
    assert sorted(ran) == ["a0", "b0", "b1"]  # a1 waits behind the 429, channel B does not
    with session_scope(session_factory) as s:
        lane = s.get_one(OutboxLane, "slack:CA")
        rows = {r.key: r for r in s.scalars(select(Outbox))}
    assert lane.not_before is not None and lane.not_before > utcnow() + timedelta(seconds=25)
    assert rows["a1"].status == OutboxStatus.PENDING and rows["a1"].attempts == 0
    assert rows["b1"].status == OutboxStatus.DONE


def test_pacing_is_stored_with_the_lane_for_every_worker(session_factory: SessionFactory) -> None:
    registry = Registry()
    registry.register("test.post", lambda ctx, row: None, paced_by_channel=True)
    with session_scope(session_factory) as s:
        enqueue(s, kind="test.post", key="a0", payload={}, channel_id="CA")
        enqueue(s, kind="test.post", key="a1", payload={}, channel_id="CA")
    one = Dispatcher(
        _services(session_factory), WebClient(token="x"), registry, channel_interval=60
    )
    assert one.run_once() == 1
    # A second worker honours the channel's pacing the first one recorded.
    other = Dispatcher(_services(session_factory), WebClient(token="x"), registry)
    assert other.run_once() == 0
    one.close()
    other.close()


def test_a_row_waiting_on_a_failed_row_stops_waiting(session_factory: SessionFactory) -> None:
    def waiting(ctx: Any, row: Outbox) -> None:
        raise RetryLater(
            "parent not posted yet", 0, counts=False, waiting_for=int(row.payload["parent"])
        )

    registry = Registry()
    registry.register("waiting", waiting)
    with session_scope(session_factory) as s:
        parent = enqueue(s, kind="parent", key="p", payload={}, status=OutboxStatus.PENDING)
        parent_id = parent.id
        enqueue(s, kind="waiting", key="w", payload={"parent": parent_id})
    dispatcher = Dispatcher(_services(session_factory), WebClient(token="x"), registry)
    with session_scope(session_factory) as s:  # the parent is still coming: waiting is free
        s.execute(update(Outbox).where(Outbox.id == parent_id).values(status="held"))
    for _ in range(3):
        dispatcher.run_once()
    with session_scope(session_factory) as s:
        assert s.scalars(select(Outbox).where(Outbox.key == "w")).one().attempts == 0
        s.execute(update(Outbox).where(Outbox.id == parent_id).values(status="failed"))
    for _ in range(MAX_ATTEMPTS + 2):
        with session_scope(session_factory) as s:
            s.execute(update(Outbox).where(Outbox.key == "w").values(next_attempt_at=utcnow()))
        dispatcher.run_once()
    dispatcher.close()
    with session_scope(session_factory) as s:
        row = s.scalars(select(Outbox).where(Outbox.key == "w")).one()
    assert row.status == OutboxStatus.FAILED
    assert f"#{parent_id}" in (row.last_error or "")


def test_a_busy_channel_delays_neither_another_channel_nor_a_send(
    env: Env, smtp_server: SmtpServer, fake_slack: FakeSlack
) -> None:
    """60 posts queued in channel A (paced at Slack's one per second): channel B's post and
    account B's reply are run before A's queue drains, not after it (finding: 64.9 s)."""
    fake_slack.add_channel("CA", "a", ["UBOT"])
    fake_slack.add_channel("CB", "b", ["UBOT"])

    def post(ctx: Any, row: Outbox) -> None:
        call_slack(ctx.slack.chat_postMessage, channel=row.channel_id, text=row.key)

    registry = Registry()
    registry.register("test.post", post, paced_by_channel=True)
    compose_outbox.register(registry)
    with session_scope(env.factory) as s:
        for n in range(60):
            enqueue(s, kind="test.post", key=f"a{n}", payload={}, channel_id="CA")
        enqueue(s, kind="test.post", key="b0", payload={}, channel_id="CB")
    aid, support, customer = smtp_account(env, smtp_server)
    mid = queue_send(env, aid, support, customer, "Re: your order")

    def posted(channel: str) -> list[str]:
        return [
            str(c.args.get("text"))
            for c in fake_slack.calls_to("chat.postMessage")
            if c.args.get("channel") == channel
        ]

    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    dispatcher = Dispatcher(env.services, client, registry)
    stop = threading.Event()
    loop = threading.Thread(target=dispatcher.run_forever, args=(stop,))
    loop.start()
    try:
        fake_slack.wait_until(lambda: bool(posted("CB")), timeout=30)
        smtp_server_done = threading.Event()
        for _ in range(300):
            if sends_of(smtp_server, mid):
                smtp_server_done.set()
                break
            stop.wait(0.1)
        a_when_b_done = posted("CA")
    finally:
        stop.set()
        loop.join(60)
        dispatcher.close()
    assert smtp_server_done.is_set()
    assert posted("CB") == ["b0"]
    assert len(a_when_b_done) < 60  # channel A's queue had not drained
    assert posted("CA") == [f"a{n}" for n in range(len(posted("CA")))]  # A kept its order


def test_workers_claiming_at_once_never_run_two_rows_of_one_lane(
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as s:
        for lane in range(3):
            for n in range(5):
                enqueue(
                    s,
                    kind="slack.post_in_thread",
                    key=f"{lane}:{n}",
                    payload={},
                    channel_id=f"C{lane}",
                )
    start = threading.Barrier(4)
    won: list[list[str]] = []
    errors: list[BaseException] = []

    def worker(owner: str) -> None:
        try:
            start.wait()
            for _ in range(5):
                with session_scope(session_factory) as s:
                    won.append(
                        [r.key for r in claim_due(s, owner=owner, lease_seconds=60, limit=10)]
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    claimed = sorted(k for keys in won for k in keys)
    assert claimed == ["0:0", "1:0", "2:0"]  # each lane's oldest row, once


def test_a_long_queue_in_one_lane_does_not_hide_other_lanes(
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as s:
        for n in range(200):
            enqueue(s, kind="slack.post_parent", key=f"a{n}", payload={}, channel_id="CA")
        enqueue(s, kind="slack.post_parent", key="b0", payload={}, channel_id="CB")
        enqueue(s, kind="mail.send", key="s0", payload={}, account_id=None)
    with session_scope(session_factory) as s:
        claimed = claim_due(s, owner="w1", lease_seconds=60, limit=3)
    assert sorted(r.key for r in claimed) == ["a0", "b0", "s0"]
