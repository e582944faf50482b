"""Admins are told once when an account falls into Error / Needs re-authorisation."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.admin_notify import alert_recipients
from bot.providers.errors import AuthError, TransientError
from bot.store.db import session_scope
from bot.store.models import Account, AccountStatus, Outbox
from bot.sync import status


def test_recipients_are_configured_admins_plus_the_slack_user_who_added_it() -> None:
    acc = Account(email="a@b.c", created_by="UADMIN")
    assert alert_recipients(["UCONF"], acc) == {"UCONF", "UADMIN"}
    assert alert_recipients([], Account(email="a@b.c", created_by="cli")) == frozenset()


def test_needs_reauth_and_error_each_dm_the_admin_once(mailroom: Any) -> None:
    acc_id = mailroom.account("support@example.com", created_by="UADMIN").id
    factory = mailroom.services.session_factory
    with session_scope(factory) as s:
        acc = s.get_one(Account, acc_id)
        status.record_failure(s, acc, AuthError("login refused"), admins=alert_recipients((), acc))
        assert acc.status == AccountStatus.NEEDS_REAUTH
    with session_scope(factory) as s:  # still failing: no second alert
        acc = s.get_one(Account, acc_id)
        status.record_failure(s, acc, AuthError("login refused"), admins=alert_recipients((), acc))
    with factory() as s:
        rows = s.scalars(select(Outbox).where(Outbox.kind == "slack.dm")).all()
        assert [r.payload["user_id"] for r in rows] == ["UADMIN"]
        assert "re-entered" in rows[0].payload["text"]
    mailroom.run_outbox()
    dms = [c for c in mailroom.fake.calls_to("chat.postMessage") if c.ok]
    assert len(dms) == 1 and "support@example.com" in dms[0].args.get("text", "")
    # a transient error shows Error only after repeated failures, with one more DM
    with session_scope(factory) as s:
        acc = s.get_one(Account, acc_id)
        status.record_success(s, acc, admins=())
        for _ in range(3):
            status.record_failure(s, acc, TransientError("timeout"), admins=["UADMIN"])
        assert acc.status == AccountStatus.ERROR
    with factory() as s:
        texts = [
            r.payload["text"] for r in s.scalars(select(Outbox).where(Outbox.kind == "slack.dm"))
        ]
    assert sum("is failing" in t for t in texts) == 1
