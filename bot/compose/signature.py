"""A mailbox's signature: a rich text template (the same Jinja2 sandbox as email templates)
rendered for the person sending and added below what they wrote, above any quote or forwarded
message, so it lands in both the HTML and the text part.

Stored as cleaned Slack rich text (`accounts.signature_rich`, see bot/mail/richtext.py) beside
its plain text (`accounts.signature`); a signature saved as plain text only still works, as one
paragraph. Variables only ever render into text nodes, which are escaped when the HTML is made.

`load` queries (the caller owns the session); `render_loaded` renders, in the template child
process, with no session open (a render may take up to its time budget, and must not hold a
transaction meanwhile). The agent's name comes from the caller, who asks Slack for it outside
any transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bot.compose.drafts import template_variables
from bot.mail.richtext import (
    clean_rich_text,
    is_blank,
    plain_to_rich_text,
    rich_text_append,
    text_length,
)
from bot.store.models import Account
from bot.templates import TemplateProblem, render, render_rich, sample_variables

SEPARATOR = "-- "  # RFC 3676 signature separator: mail clients fold or dim what follows
MAX_TEXT = 3000  # characters of text in a signature


def has_signature(account: Account) -> bool:
    return not is_blank(account.signature_rich) or bool((account.signature or "").strip())


def check(rich: dict[str, Any]) -> str | None:
    """Why an admin's signature cannot be saved, or None (an empty one clears it)."""
    if is_blank(rich):
        return None
    if text_length(rich) > MAX_TEXT:
        return f"Keep the signature under {MAX_TEXT:,} characters."
    result = render_rich("", rich, sample_variables())
    if isinstance(result, TemplateProblem):
        return str(result).replace("Body, ", "", 1)
    return None


@dataclass
class SignatureSource:
    """What rendering a signature needs, read in a session and rendered after it."""

    rich: dict[str, Any] | None  # the cleaned rich text template, or None (plain only)
    plain: str
    variables: dict[str, Any]


def load(
    session: Session,
    account: Account,
    *,
    conversation_id: int | None,
    source_pk: int | None,
    agent_name: str,
) -> SignatureSource | None:
    """Reads only: the account's signature template and its variables (None: no signature)."""
    if not has_signature(account):
        return None
    variables = template_variables(
        session,
        account_id=account.id,
        conversation_id=conversation_id,
        source_pk=source_pk,
        agent_name=agent_name,
    )
    rich = None if is_blank(account.signature_rich) else clean_rich_text(account.signature_rich)
    return SignatureSource(rich, (account.signature or "").strip(), variables)


def render_loaded(src: SignatureSource | None) -> dict[str, Any] | None:
    """The signature for this send, as rich text; None when there is none or it no longer
    renders (a broken signature must not block a reply: the admin form refuses them).
    No session: call it after the read."""
    if src is None:
        return None
    if src.rich is not None:
        rich = render_rich("", src.rich, src.variables)
        if isinstance(rich, TemplateProblem):
            return None
        value = rich[1]
    else:
        plain = render("", src.plain, src.variables)
        if isinstance(plain, TemplateProblem):
            return None
        value = plain_to_rich_text(plain[1].strip())
    return None if is_blank(value) else value


def rendered(
    session: Session,
    account: Account,
    *,
    conversation_id: int | None,
    source_pk: int | None,
    agent_name: str,
) -> dict[str, Any] | None:
    """Both steps (the CLI and tests); listeners render after their read session."""
    return render_loaded(
        load(
            session,
            account,
            conversation_id=conversation_id,
            source_pk=source_pk,
            agent_name=agent_name,
        )
    )


def with_signature(body: dict[str, Any], signature: dict[str, Any] | None) -> dict[str, Any]:
    """`body` (rich text) with the signature below it, after the "-- " line.

    A blank line separates them when the body ends with a paragraph (paragraphs otherwise
    follow one another line by line); a signature alone (a forward without a note) starts
    with the separator, no blank lines above it."""
    if signature is None or is_blank(signature):
        return clean_rich_text(body)
    elements = clean_rich_text(body)["elements"]
    ends_in_paragraph = (
        not is_blank(body) and bool(elements) and elements[-1]["type"] == "rich_text_section"
    )
    separator = ("\n" if ends_in_paragraph else "") + SEPARATOR
    signed = {
        "type": "rich_text",
        "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": separator}]},
            *clean_rich_text(signature)["elements"],
        ],
    }
    return rich_text_append(body, signed)
