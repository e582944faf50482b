"""After a UIDVALIDITY change, a run that fails part-way marks nothing deleted (security
review #18): the folder's locations were dropped for the re-read, and what was not found
again yet is not gone. The next run finishes the re-read."""

from __future__ import annotations

import pytest

from bot.store.models import RunStatus
from tests.sync.conftest import Env, make_raw

pytestmark = pytest.mark.dovecot


class Crash(Exception):
    pass


def test_a_failed_re_read_after_a_uidvalidity_change_deletes_nothing(env: Env) -> None:
    aid, user = env.new_account()
    for i in range(6):
        env.dovecot.deliver(user.username, make_raw(f"Mail {i}")[0])
    assert env.sync(aid).error is None
    assert len(env.messages(aid)) == 6
    env.dovecot.reset_uidvalidity(user.username, "INBOX")

    def crash(folder: str, last_uid: int) -> None:
        raise Crash(f"network gone after {folder} uid {last_uid}")

    run = env.sync(aid, batch_size=2, after_batch=crash)
    assert run.status == RunStatus.ERROR
    messages = env.messages(aid)
    assert [m for m in messages if m.deleted] == []
    assert not any(env.conversation(m.conversation_id).deleted for m in messages)

    run = env.sync(aid, batch_size=2)
    assert run.error is None
    assert len(env.locations(aid)) == 6
    assert not any(m.deleted for m in env.messages(aid))


def test_a_reset_folder_that_finishes_still_marks_what_left_it(env: Env) -> None:
    """The control: mail expunged across the UIDVALIDITY change is marked deleted by the run
    that finishes the re-read, as before."""
    aid, user = env.new_account()
    env.dovecot.deliver(user.username, make_raw("Keep")[0])
    raw, gone_mid = make_raw("Delete me")
    uid = env.dovecot.deliver(user.username, raw)
    env.sync(aid)
    with env.dovecot.admin(user.username) as conn:
        conn.select("INBOX")
        conn.uid("STORE", str(uid), "+FLAGS", "(\\Deleted)")
        conn.expunge()
    env.dovecot.reset_uidvalidity(user.username, "INBOX")
    assert env.sync(aid).error is None
    by_mid = {m.message_id: m for m in env.messages(aid)}
    assert by_mid[gone_mid].deleted
    assert [m for m in by_mid.values() if m.deleted] == [by_mid[gone_mid]]
