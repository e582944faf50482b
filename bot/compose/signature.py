"""A mailbox's signature: a Jinja2 template (the same sandbox as email templates) rendered for
the person sending and added below what they wrote, above any quote or forwarded message.

Queries only (the caller owns the session); the agent's name comes from the caller, who asks
Slack for it outside any transaction.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.compose.drafts import template_variables
from bot.store.models import Account
from bot.templates import MAX_BODY_SOURCE, TemplateProblem, render, sample_variables

SEPARATOR = "-- "  # RFC 3676 signature separator: mail clients fold or dim what follows


def check(source: str) -> str | None:
    """Why an admin's signature cannot be saved, or None."""
    if len(source) > MAX_BODY_SOURCE:
        return f"Keep the signature under {MAX_BODY_SOURCE} characters."
    result = render("", source, sample_variables())
    if isinstance(result, TemplateProblem):
        return str(result).replace("Body, ", "", 1)
    return None


def rendered(
    session: Session,
    account: Account,
    *,
    conversation_id: int | None,
    source_pk: int | None,
    agent_name: str,
) -> str:
    """The account's signature for this send; "" when there is none or it no longer renders
    (a broken signature must not block a reply: the admin form refuses broken ones)."""
    source = (account.signature or "").strip()
    if not source:
        return ""
    variables = template_variables(
        session,
        account_id=account.id,
        conversation_id=conversation_id,
        source_pk=source_pk,
        agent_name=agent_name,
    )
    result = render("", source, variables)
    if isinstance(result, TemplateProblem):
        return ""
    return result[1].strip()


def with_signature(body: str, signature: str) -> str:
    if not signature:
        return body
    if not body.strip():  # e.g. a forward without a note
        return f"{SEPARATOR}\n{signature}"
    return f"{body.rstrip()}\n\n{SEPARATOR}\n{signature}"
