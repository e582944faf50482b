"""Gmail and Microsoft 365 sends: the lease is checked right before the API send, and an
accepted send (the outbox row's marker) is never sent again, even when the mailbox's Sent
search cannot see it yet (Exchange files Sent Items late)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete

from bot.store.db import session_scope
from bot.store.models import Message, Provider
from bot.sync.api_sync import send_mail_api
from tests.providers_api.conftest import ApiEnv, make_raw


class _Lost(Exception):
    pass


@pytest.mark.parametrize("provider", [Provider.GMAIL, Provider.GRAPH])
def test_an_accepted_send_only_finishes_the_bookkeeping(
    api_env: ApiEnv, provider: Provider
) -> None:
    env = api_env
    aid, email = env.add_account(provider)
    raw, mid = make_raw("Quote", sender=email, to="bob@example.org")
    markers: list[dict[str, Any]] = []
    # The first try: accepted, and the marker handed to the caller before the store copy.
    send_mail_api(env.services, env.account(aid), raw, mid, on_accepted=markers.append)
    box = env.gmail.box(email) if provider == Provider.GMAIL else env.graph.box(email)
    assert len(box.sent) == 1 and len(markers) == 1
    # A retry with the marker, the store copy gone and Sent not searchable: no second send.
    with session_scope(env.factory) as s:
        s.execute(delete(Message).where(Message.message_id == mid))
    if provider == Provider.GRAPH:
        box.sent.clear()  # Exchange has not filed it yet: the search would find nothing
    send_mail_api(env.services, env.account(aid), raw, mid, accepted={**markers[0], "at": "t"})
    assert len(box.sent) == (1 if provider == Provider.GMAIL else 0)
    assert env.by_mid(aid, mid) is not None


@pytest.mark.parametrize("provider", [Provider.GMAIL, Provider.GRAPH])
def test_a_lost_lease_stops_the_api_send(api_env: ApiEnv, provider: Provider) -> None:
    env = api_env
    aid, email = env.add_account(provider)
    raw, mid = make_raw("Quote", sender=email, to="bob@example.org")

    def lost() -> None:
        raise _Lost()

    with pytest.raises(_Lost):
        send_mail_api(env.services, env.account(aid), raw, mid, before_send=lost)
    box = env.gmail.box(email) if provider == Provider.GMAIL else env.graph.box(email)
    assert box.sent == []
