"""Finding #17: one scheduler never runs an account twice at once, a stale run cannot free a
newer run's lease, and a long batch keeps its lease."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from bot.store.db import session_scope
from bot.store.models import Account, utcnow
from bot.sync import leases
from bot.sync.engine import SyncOptions
from bot.sync.scheduler import SyncScheduler
from tests.sync.conftest import Env, make_raw


def _lease(env: Env, aid: int) -> tuple[str | None, object]:
    with session_scope(env.factory) as s:
        acc = s.get_one(Account, aid)
        return acc.lease_owner, acc.lease_expires_at


def test_tick_skips_an_account_it_is_running_when_its_lease_lapsed(env: Env) -> None:
    aid, user = env.new_account()
    env.dovecot.deliver(user.username, make_raw("Slow batch")[0])
    in_batch, go = threading.Event(), threading.Event()

    def long_batch(folder: str, last_uid: int) -> None:
        if not in_batch.is_set():
            in_batch.set()
            assert go.wait(60)

    scheduler = SyncScheduler(
        env.services,
        tick_seconds=3600,
        max_workers=3,
        idle=False,
        options=SyncOptions(after_batch=long_batch),
    )
    try:
        scheduler.tick()
        assert in_batch.wait(60)
        # The batch outlasts the lease (and the account is due): the next tick must not start
        # a second run of it next to the first.
        with session_scope(env.factory) as s:
            s.execute(
                update(Account)
                .where(Account.id == aid)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1), next_sync_at=utcnow())
            )
        scheduler.tick()
        scheduler.tick()
        _, expires = _lease(env, aid)
        assert expires is not None and expires < utcnow()  # type: ignore[operator]  # not re-claimed
        assert len(env.runs(aid)) == 1
    finally:
        go.set()
        scheduler.stop()
    assert len(env.runs(aid)) == 1


def test_a_stale_run_cannot_release_or_renew_a_newer_runs_lease(env: Env) -> None:
    aid, _ = env.new_account()
    old = leases.run_owner("host:1:abc")
    new = leases.run_owner("host:1:abc")  # the same worker, a later run
    assert old != new
    assert leases.claim(env.factory, aid, old)
    with session_scope(env.factory) as s:
        s.get_one(Account, aid).lease_expires_at = utcnow() - timedelta(seconds=1)
    assert leases.claim(env.factory, aid, new)
    with pytest.raises(leases.LeaseLost):
        leases.renew(env.factory, aid, old)
    leases.release(env.factory, aid, old)
    assert _lease(env, aid)[0] == new


def test_a_long_batch_keeps_its_lease_on_a_timer_and_notices_losing_it(env: Env) -> None:
    aid, _ = env.new_account()
    owner = leases.run_owner("w")
    assert leases.claim(env.factory, aid, owner, lease_seconds=60)
    _, before = _lease(env, aid)
    with leases.keep_renewed(env.factory, aid, owner, lease_seconds=600, every=0.05) as lost:
        deadline = time.monotonic() + 30
        while _lease(env, aid)[1] == before and time.monotonic() < deadline:
            time.sleep(0.05)
        owner_now, after = _lease(env, aid)
        assert owner_now == owner and after > before  # type: ignore[operator]
        # Another worker took the account over: the timer notices and stops renewing.
        with session_scope(env.factory) as s:
            s.get_one(Account, aid).lease_expires_at = utcnow() - timedelta(seconds=1)
        assert leases.claim(env.factory, aid, "other-worker")
        assert lost.wait(30)
    assert _lease(env, aid)[0] == "other-worker"
