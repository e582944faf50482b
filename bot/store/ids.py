"""Primary keys handed out before an INSERT, so a batch of new rows is one executemany.

The ORM needs each new row's id back. Without one set in advance it asks the database per
row on SQLite (its RETURNING order is not guaranteed, so SQLAlchemy sends one INSERT a row):
for the new conversations of a 20,000-message sync that was ~0.5 s of the storing process.
With the ids set, the flush sends the whole batch as one executemany.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session


def reserve_ids(session: Session, model: type[Any], n: int) -> list[int]:
    """`n` new ids for `model`'s integer primary key `id`, unused by any other writer.

    PostgreSQL: taken from the column's sequence, as its own default would. SQLite: the ids
    after the largest one, as SQLite itself assigns them; safe because a Mailroom transaction
    holds SQLite's write lock from its start (BEGIN IMMEDIATE, bot/store/db.py).
    """
    table = model.__table__
    assert isinstance(table, Table)
    if n <= 0:
        return []
    # No autoflush: the rows these ids are for may be pending in the session already, and
    # flushing them now, without ids, is the per-row INSERT this avoids.
    with session.no_autoflush:
        if session.get_bind().dialect.name == "postgresql":
            rows = session.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"
                ),
                {"t": table.name, "n": n},
            )
            return [int(r[0]) for r in rows]
        top = session.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + n))
