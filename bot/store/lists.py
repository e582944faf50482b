"""`column IN (values)` with the values bound as one parameter.

SQLAlchemy's `in_()` binds each value on its own: at every execution it expands the list into
that many placeholders and builds the parameters for them. The statement cache cannot help,
since the placeholders depend on the list. A sync's batch asks a few such lists of up to 500
values: in the storing process that was ~0.3 s of a 20,000-message sync. Here the list is one
parameter: a JSON array read by `json_each` on SQLite, an array compared with `= ANY` on
PostgreSQL. The SQL is the same for every list, so it is compiled once and cached, and there is
no limit on the number of values (SQLite stops at 32,766 parameters).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Select, any_, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session


def one_of(session: Session, column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN values` for the session's database, the values bound as one parameter.
    The values must be plain strings or integers, like the column they are compared with."""
    items = list(values)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return column == any_(bindparam(None, items, type_=ARRAY(column.type)))
    if dialect == "sqlite":
        listed: Select[Any] = select(literal_column("value")).select_from(
            func.json_each(bindparam(None, json.dumps(items)))
        )
        return column.in_(listed)
    return column.in_(items)
