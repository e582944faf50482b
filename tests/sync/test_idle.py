"""New mail reaches the store through the worker's IDLE watcher, without waiting for a tick."""

from __future__ import annotations

import time
from datetime import timedelta

from bot.store.db import session_scope
from bot.store.models import Account, utcnow
from bot.sync.scheduler import SyncScheduler
from tests.sync.conftest import Env, make_raw


def test_idle_delivery_reaches_the_store(env: Env) -> None:
    aid, user = env.new_account()
    # A long tick: only the initial run comes from the scheduler, new mail must come via IDLE.
    scheduler = SyncScheduler(env.services, tick_seconds=3600, max_workers=2)
    scheduler.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            env.runs(aid) and env.runs(aid)[-1].finished_at and scheduler.watched_accounts
        ):
            time.sleep(0.2)
        assert scheduler.watched_accounts == {aid}
        with session_scope(env.factory) as s:  # the schedule would not run it for an hour
            s.get_one(Account, aid).next_sync_at = utcnow() + timedelta(hours=1)
        time.sleep(1.0)  # let the watcher enter IDLE
        raw, mid = make_raw("Pushed by IDLE")
        env.dovecot.deliver(user.username, raw)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and mid not in {m.message_id for m in env.messages(aid)}:
            time.sleep(0.1)
        assert mid in {m.message_id for m in env.messages(aid)}
        assert any(r.trigger == "idle" for r in env.runs(aid))
    finally:
        scheduler.stop()
