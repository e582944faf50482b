"""Account status, backoff and admin alerts: wrong password, unreachable host, outages."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.store.db import session_scope
from bot.store.models import Account, AccountStatus, Outbox, RunStatus, utcnow
from bot.sync import leases
from bot.sync.status import backoff_seconds
from tests.mailservers.dovecot import free_port
from tests.sync.conftest import ADMIN, Env, make_raw


def _set_imap(env: Env, aid: int, **changes: object) -> None:
    with session_scope(env.factory) as s:
        acc = s.get_one(Account, aid)
        acc.config = {**acc.config, "imap": {**acc.config["imap"], **changes}}


def _set_password(env: Env, aid: int, password: str) -> None:
    with session_scope(env.factory) as s:
        acc = s.get_one(Account, aid)
        acc.credentials = env.services.vault.encrypt(
            {"imap_password": password, "smtp_password": password}
        )


def _dms(env: Env) -> list[Outbox]:
    with session_scope(env.factory) as s:
        return list(s.scalars(select(Outbox).where(Outbox.kind == "slack.dm").order_by(Outbox.id)))


def test_wrong_password_needs_reauth_and_alerts_once(env: Env) -> None:
    aid, user = env.new_account()
    _set_password(env, aid, "not-the-password")
    run = env.sync(aid)
    assert run.status == RunStatus.ERROR and run.error
    assert "not-the-password" not in (run.error or "")
    acc = env.account(aid)
    assert acc.status == AccountStatus.NEEDS_REAUTH
    assert acc.last_error and "not-the-password" not in acc.last_error
    env.sync(aid)  # a manual retry fails the same way: no second alert
    dms = _dms(env)
    assert [d.payload["user_id"] for d in dms] == [ADMIN]
    assert user.address in dms[0].payload["text"]
    # The scheduler no longer claims it (it would only hammer the server with a bad password).
    with session_scope(env.factory) as s:
        s.get_one(Account, aid).next_sync_at = utcnow() - timedelta(seconds=1)
    assert leases.claim_due(env.factory, "w1", limit=5) == []
    # Fixed: the next run recovers and says so.
    _set_password(env, aid, user.password)
    run = env.sync(aid)
    assert run.status == RunStatus.OK
    assert env.account(aid).status == AccountStatus.ACTIVE
    assert len(_dms(env)) == 2 and "works again" in _dms(env)[1].payload["text"]


def test_peer_11_unreachable_host_backs_off_without_reauth(env: Env) -> None:
    aid, _user = env.new_account()
    _set_imap(env, aid, port=free_port())
    delays = []
    for _ in range(4):
        run = env.sync(aid)
        assert run.status == RunStatus.ERROR and run.error
        acc = env.account(aid)
        assert acc.status != AccountStatus.NEEDS_REAUTH
        assert acc.next_sync_at is not None and acc.last_sync_at is not None
        delays.append((acc.next_sync_at - acc.last_sync_at).total_seconds())
    acc = env.account(aid)
    assert acc.status == AccountStatus.ERROR and acc.consecutive_failures == 4
    assert "127.0.0.1" in (acc.last_error or "")
    assert delays == [backoff_seconds(300, n) for n in range(1, 5)]
    assert delays == sorted(delays) and delays[-1] <= 3600
    assert len(_dms(env)) == 1  # one alert for the transition, not one per failure


def test_peer_6_outage_backlog_is_imported_and_alerted(env: Env) -> None:
    aid, user = env.new_account()
    env.sync(aid)
    port = env.account(aid).config["imap"]["port"]
    _set_imap(env, aid, port=free_port())
    env.sync(aid)
    env.sync(aid)
    assert env.account(aid).status == AccountStatus.ERROR
    assert len(_dms(env)) == 1
    mids = set()
    for i in range(50):
        raw, mid = make_raw(f"During the outage {i}")
        env.dovecot.deliver(user.username, raw)
        mids.add(mid)
    _set_imap(env, aid, port=port)
    run = env.sync(aid)
    assert run.new == 50
    assert {m.message_id for m in env.messages(aid)} == mids
    assert env.account(aid).status == AccountStatus.ACTIVE
    assert "works again" in _dms(env)[-1].payload["text"]


def test_backoff_formula() -> None:
    assert backoff_seconds(300, 0) == 300
    assert backoff_seconds(300, 1) == 600
    assert backoff_seconds(300, 3) == 2400
    assert backoff_seconds(300, 30) == 3600
