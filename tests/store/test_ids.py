"""Ids reserved before an INSERT never collide with other rows' ids, on both databases."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.store.db import SessionFactory, session_scope
from bot.store.ids import reserve_ids
from bot.store.models import Conversation
from tests.store.helpers import make_account


def test_reserved_ids_are_fresh_and_the_database_goes_on_after_them(
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as s:
        account = make_account(s)
        s.add(Conversation(account_id=account.id, subject="before"))  # the database's own id
        s.flush()
        taken = set(s.scalars(select(Conversation.id)))
        ids = reserve_ids(s, Conversation, 3)
        assert len(set(ids)) == 3 and not taken & set(ids)
        s.add_all(Conversation(id=i, account_id=account.id, subject=f"r{i}") for i in ids)
        s.flush()
        assert reserve_ids(s, Conversation, 0) == []
        more = reserve_ids(s, Conversation, 2)
        assert not set(more) & (taken | set(ids))
        # A row given no id afterwards gets one of its own, not a reserved one.
        later = Conversation(account_id=account.id, subject="after")
        s.add(later)
        s.flush()
        assert later.id not in taken | set(ids)
        assert s.scalar(select(func.count()).select_from(Conversation)) == 5
