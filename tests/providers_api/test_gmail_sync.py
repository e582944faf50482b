"""Gmail: full sync, history, expired history, rate limits, tokens, write-back, sending."""

from __future__ import annotations

from bot.store.models import Provider
from tests.providers_api.conftest import ApiEnv, make_raw


def test_full_then_incremental(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    raw1, mid1 = make_raw("Order 1")
    env.gmail.deliver(email, raw1)
    raw2, mid2 = make_raw("Re: Order 1", in_reply_to=mid1)
    env.gmail.deliver(email, raw2, labels=("INBOX",))
    assert env.sync(aid) == (2, 0, 0)
    m1, m2 = env.by_mid(aid, mid1), env.by_mid(aid, mid2)
    assert m1.conversation_id == m2.conversation_id
    assert (m1.is_read, m2.is_read) == (False, True)
    assert env.where(aid, mid1) == {"INBOX"}
    raw3, _ = make_raw("Another")
    env.gmail.deliver(email, raw3)
    assert env.sync(aid) == (1, 0, 0)
    assert len(env.messages(aid)) == 3
