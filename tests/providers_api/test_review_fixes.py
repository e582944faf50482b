"""Microsoft 365 mail whose storing fails is fetched again, then quarantined visibly
(security review #4); Gmail Delete keeps the team's own sent replies (#21)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.store import ingest as ingest_mod
from bot.store.models import Provider
from bot.sync.api_sync import MAX_ATTEMPTS, writeback
from tests.providers_api.conftest import ApiEnv, make_raw


class Locked(Exception):
    """Stands for the store failing (SQLite "database is locked", a PostgreSQL error)."""


def failing_ingest(monkeypatch: pytest.MonkeyPatch, times: int) -> list[str]:
    """The store fails the first `times` ingests (a fault, injected); returns the calls.
    Appending "stop" to the list ends the failures."""
    real: Callable[..., Any] = ingest_mod.ingest_message
    calls: list[str] = []

    def ingest(session: Any, account: Any, raw: bytes, **kw: Any) -> Any:
        if "stop" in calls:
            return real(session, account, raw, **kw)
        calls.append(str(kw.get("provider_id")))
        if len(calls) <= times:
            raise Locked("database is locked")
        return real(session, account, raw, **kw)

    monkeypatch.setattr(ingest_mod, "ingest_message", ingest)
    return calls


def test_a_graph_message_that_failed_once_is_stored_on_the_next_run(
    api_env: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    raw, mid = make_raw("Order 7")
    env.graph.deliver(email, raw)
    calls = failing_ingest(monkeypatch, times=1)
    assert env.sync(aid) == (0, 0, 0)
    assert any("will retry" in str(p["problem"]) for p in env.problems())
    assert env.sync(aid) == (1, 0, 0)  # fetched again by id although the delta moved on
    assert env.by_mid(aid, mid).subject == "Order 7"
    assert env.where(aid, mid) == {"inbox"}
    assert len(calls) == 2
    assert env.sync(aid) == (0, 0, 0)
    assert len(calls) == 2  # stored: off the retry list


def test_a_graph_message_that_always_fails_is_quarantined_visibly(
    api_env: ApiEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    env.graph.deliver(email, make_raw("Poison")[0])
    calls = failing_ingest(monkeypatch, times=10**6)
    for _ in range(MAX_ATTEMPTS + 2):
        env.sync(aid)
    assert len(calls) == MAX_ATTEMPTS  # then it stops trying
    assert any("quarantined" in str(p["problem"]) for p in env.problems())
    assert "quarantined" in (env.cursor(aid, "inbox") or "")
    # Other mail keeps flowing meanwhile.
    calls.append("stop")
    raw, _ = make_raw("Next one")
    env.graph.deliver(email, raw)
    assert env.sync(aid)[0] == 1


def test_gmail_delete_keeps_the_teams_sent_replies(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw, mid = make_raw("Please help")
    inbound = env.gmail.deliver(email, raw)
    reply, _ = make_raw("Re: Please help", sender=email, to="alice@example.org", in_reply_to=mid)
    sent = env.gmail.deliver(email, reply, labels=("SENT",))
    env.sync(aid)
    msg = env.by_mid(aid, mid)
    assert len({m.conversation_id for m in env.messages(aid)}) == 1
    box = env.gmail.box(email)
    writeback(
        env.services, env.account(aid), "mail.trash", {"conversation_id": msg.conversation_id}
    )
    assert "TRASH" in box.messages[inbound].labels
    assert "TRASH" not in box.messages[sent].labels  # Gmail would purge it in 30 days
    assert env.conversation(msg.conversation_id).deleted
