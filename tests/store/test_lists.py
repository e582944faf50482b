"""one_of: IN lists bound as one parameter, on both databases."""

from __future__ import annotations

from sqlalchemy import event, select

from bot.store.db import SessionFactory, session_scope
from bot.store.lists import one_of
from bot.store.models import Conversation, Message
from tests.store.helpers import make_account


def test_one_of_matches_like_in(session_factory: SessionFactory) -> None:
    odd = ['quote"d@x', "back\\slash@x", "ünï@x", "comma,@x", "plain@x"]
    with session_scope(session_factory) as s:
        account = make_account(s)
        convs = [Conversation(account_id=account.id, subject=str(i)) for i in range(4)]
        s.add_all(convs)
        s.flush()
        for i, mid in enumerate(odd):
            s.add(Message(account_id=account.id, conversation_id=convs[i % 4].id, message_id=mid))
        s.flush()
        found = s.scalars(
            select(Message.message_id).where(one_of(s, Message.message_id, [*odd[:4], "none@x"]))
        ).all()
        assert sorted(found) == sorted(odd[:4])
        ids = [convs[0].id, convs[2].id, -1]
        assert sorted(
            s.scalars(select(Conversation.id).where(one_of(s, Conversation.id, ids)))
        ) == [
            convs[0].id,
            convs[2].id,
        ]
        assert s.scalars(select(Message.id).where(one_of(s, Message.message_id, []))).all() == []


def test_one_of_is_one_statement_for_any_length(session_factory: SessionFactory) -> None:
    """The SQL does not depend on the list: compiled once, and past SQLite's 32,766 bound
    parameters a list still works."""
    sql: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        sql.append(statement)

    with session_scope(session_factory) as s:
        account = make_account(s)
        conv = Conversation(account_id=account.id, subject="s")
        s.add(conv)
        s.flush()
        s.add(Message(account_id=account.id, conversation_id=conv.id, message_id="m40000@x"))
        s.flush()
        engine = s.get_bind()
        event.listen(engine, "before_cursor_execute", record)
        try:
            for n in (1, 3, 40_001):
                wanted = [f"m{i}@x" for i in range(n)]
                got = s.scalars(
                    select(Message.message_id).where(one_of(s, Message.message_id, wanted))
                ).all()
                assert got == (["m40000@x"] if n > 40_000 else [])
        finally:
            event.remove(engine, "before_cursor_execute", record)
    assert len(sql) == 3 and len(set(sql)) == 1
