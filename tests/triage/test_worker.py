"""The worker process runs the snooze waker: a due snooze wakes without anyone clicking, and a
restarted worker picks up snoozes stored before it started."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.store import triage as st
from bot.store.db import session_scope
from bot.store.ingest import ingest_message
from bot.store.models import Conversation
from bot.worker import Worker
from tests.store.helpers import make_account, raw_mail


def test_the_worker_wakes_a_snooze_stored_before_it_started(mailroom: Any) -> None:
    with session_scope(mailroom.services.session_factory) as s:
        acc = make_account(s)
        conv = ingest_message(s, acc, raw_mail("w@acme.example")).conversation
        st.snooze(s, conv, "U1", datetime.now(UTC) - timedelta(seconds=1))
        cid = conv.id
    worker = Worker(mailroom.services, mailroom.app.client, tick_seconds=60, idle=False)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            with mailroom.services.session_factory() as s:
                if s.get_one(Conversation, cid).snoozed_until is None:
                    break
            assert time.monotonic() < deadline, "the worker never woke the snooze"
            time.sleep(0.1)
    finally:
        worker.stop()
