"""Two workers never sync one account at once; a dead worker's lease expires."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta

from bot.store.db import session_scope
from bot.store.models import Account, utcnow
from bot.sync import leases
from bot.sync.engine import AccountBusy, sync_account
from tests.sync.conftest import Env, make_raw


def test_two_workers_never_sync_one_account_at_once(env: Env) -> None:
    aid, user = env.new_account()
    for i in range(30):
        env.dovecot.deliver(user.username, make_raw(f"Race {i}")[0])
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def worker(owner: str) -> None:
        try:
            start.wait()
            for _ in range(6):
                for account_id in leases.claim_due(env.factory, owner, limit=1):
                    sync_account(env.services, account_id, owner=owner, claimed=True)
                # Make it due again at once so both keep racing for it.
                with session_scope(env.factory) as s:
                    s.get_one(Account, aid).next_sync_at = utcnow()
                try:
                    sync_account(env.services, aid, owner=owner)
                except AccountBusy:
                    pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    runs = env.runs(aid)
    assert len(runs) >= 3
    spans = sorted((r.started_at, r.finished_at) for r in runs)
    for (_s1, e1), (s2, _e2) in itertools.pairwise(spans):
        assert e1 is not None and e1 <= s2, "two runs of one account overlapped"
    assert sum(r.new_count for r in runs) == 30
    assert len(env.messages(aid)) == 30


def test_claim_due_is_exclusive(env: Env) -> None:
    aid, _ = env.new_account()
    won: list[list[int]] = []
    barrier = threading.Barrier(4)

    def claim(owner: str) -> None:
        barrier.wait()
        won.append(leases.claim_due(env.factory, owner, limit=5))

    threads = [threading.Thread(target=claim, args=(f"c{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(len(w) for w in won) == [0, 0, 0, 1]
    assert [x for w in won for x in w] == [aid]


def test_dead_workers_lease_expires(env: Env) -> None:
    aid, _ = env.new_account()
    with session_scope(env.factory) as s:
        acc = s.get_one(Account, aid)
        acc.lease_owner, acc.lease_expires_at = "dead-worker", utcnow() + timedelta(minutes=5)
    assert leases.claim_due(env.factory, "alive", limit=5) == []
    assert not leases.claim(env.factory, aid, "alive")
    with session_scope(env.factory) as s:
        s.get_one(Account, aid).lease_expires_at = utcnow() - timedelta(seconds=1)
    assert leases.claim_due(env.factory, "alive", limit=5) == [aid]
    # The dead worker cannot renew a lease it lost.
    try:
        leases.renew(env.factory, aid, "dead-worker")
    except leases.LeaseLost:
        pass
    else:
        raise AssertionError("renew succeeded for a lost lease")
    assert env.account(aid).lease_owner == "alive"
