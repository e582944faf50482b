"""Email templates: CRUD queries (no commits; the caller owns the transaction)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.store.models import Template


class DuplicateName(Exception):
    """Another template already has this name."""


@dataclass(frozen=True)
class TemplateSummary:
    id: int
    name: str
    subject: str
    updated_by: str | None
    shared: bool = True
    owner: str | None = None  # who wrote it (Slack user id)


def visible_to(user_id: str | None) -> ColumnElement[bool] | None:
    """Shared templates, and the person's own personal ones (None: every template)."""
    if user_id is None:
        return None
    return or_(Template.shared.is_(True), Template.created_by == user_id)


def may_see(template: Template, user_id: str) -> bool:
    return template.shared or template.created_by == user_id


def may_change(template: Template, user_id: str, *, is_admin: bool) -> bool:
    """The author changes their own (personal or shared); admins manage every shared one."""
    return template.created_by == user_id or (is_admin and template.shared)


def list_templates(
    session: Session, limit: int = 100, *, user_id: str | None = None
) -> list[TemplateSummary]:
    """By name; with `user_id`, only what that person may use (shared + their own)."""
    query = select(Template).order_by(func.lower(Template.name)).limit(limit)
    where = visible_to(user_id)
    if where is not None:
        query = query.where(where)
    return [
        TemplateSummary(t.id, t.name, t.subject, t.updated_by, bool(t.shared), t.created_by)
        for t in session.scalars(query)
    ]


def get_template(session: Session, template_id: int) -> Template | None:
    return session.get(Template, template_id)


def _name_taken(session: Session, name: str, except_id: int | None) -> bool:
    query = select(Template.id).where(func.lower(Template.name) == name.strip().lower())
    if except_id is not None:
        query = query.where(Template.id != except_id)
    return session.scalar(query.limit(1)) is not None


def create_template(
    session: Session,
    *,
    name: str,
    subject: str,
    body: str,
    user_id: str | None,
    body_rich: dict[str, Any] | None = None,
    shared: bool = True,
) -> Template:
    if _name_taken(session, name, None):
        raise DuplicateName(name)
    row = Template(
        name=name.strip(),
        subject=subject,
        body=body,
        body_rich=body_rich,
        shared=shared,
        created_by=user_id,
        updated_by=user_id,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError as exc:  # a concurrent save with the same name
        raise DuplicateName(name) from exc
    return row


def update_template(
    session: Session,
    template_id: int,
    *,
    name: str,
    subject: str,
    body: str,
    user_id: str | None,
    body_rich: dict[str, Any] | None = None,
    shared: bool | None = None,
) -> Template | None:
    row = session.get(Template, template_id)
    if row is None:
        return None
    if _name_taken(session, name, template_id):
        raise DuplicateName(name)
    if shared is not None:
        row.shared = shared
    row.name = name.strip()
    row.subject = subject
    row.body = body
    row.body_rich = body_rich
    row.updated_by = user_id
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise DuplicateName(name) from exc
    return row


def delete_template(session: Session, template_id: int) -> bool:
    row = session.get(Template, template_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True
