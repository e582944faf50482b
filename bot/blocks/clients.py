"""Client modal (add / edit) and a client's timeline (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from bot.blocks import ids
from bot.blocks.search import PageState, ResultItem, results_message
from bot.blocks.text import escape_mrkdwn, plain, truncate

B_NAME, B_COMPANY, B_EMAILS, B_DOMAINS, B_NOTES = (
    "cl_name",
    "cl_company",
    "cl_emails",
    "cl_domains",
    "cl_notes",
)
A = "v"


def _input(
    block_id: str,
    label: str,
    initial: str = "",
    *,
    optional: bool = True,
    multiline: bool = False,
    hint: str | None = None,
    max_length: int = 3000,
) -> dict[str, Any]:
    el: dict[str, Any] = {"type": "plain_text_input", "action_id": A, "max_length": max_length}
    if initial:
        el["initial_value"] = truncate(initial, max_length, "")
    if multiline:
        el["multiline"] = True
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label),
        "optional": optional,
        "element": el,
    }
    if hint:
        block["hint"] = plain(hint)
    return block


def client_modal(
    *,
    client_id: int | None = None,
    name: str = "",
    company: str = "",
    emails: Sequence[str] = (),
    domains: Sequence[str] = (),
    notes: str = "",
) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.VIEW_CLIENT_EDIT,
        "title": plain("Edit client" if client_id else "Add client", 24),
        "submit": plain("Save", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"client_id": client_id}),
        "blocks": [
            _input(B_NAME, "Name", name, optional=False, max_length=300),
            _input(B_COMPANY, "Company", company, max_length=300),
            _input(
                B_EMAILS,
                "Email addresses",
                "\n".join(emails),
                multiline=True,
                hint="One per line (or comma-separated). Mail from these links automatically.",
            ),
            _input(
                B_DOMAINS,
                "Domains",
                "\n".join(domains),
                multiline=True,
                hint="e.g. acme.com: any sender there links to this client (not gmail.com etc.).",
            ),
            _input(B_NOTES, "Notes", notes, multiline=True),
        ],
    }


def read_client_form(values: Mapping[str, Any]) -> dict[str, Any]:
    def text(block: str) -> str:
        return str(((values.get(block) or {}).get(A) or {}).get("value") or "").strip()

    def items(block: str) -> list[str]:
        raw = text(block).replace(",", "\n").replace(";", "\n")
        out: list[str] = []
        for part in raw.split():
            p = part.strip().lower().lstrip("@")
            if p and p not in out:
                out.append(p)
        return out

    return {
        "name": text(B_NAME),
        "company": text(B_COMPANY),
        "emails": items(B_EMAILS),
        "domains": items(B_DOMAINS),
        "notes": text(B_NOTES),
    }


def client_id_of(view: Mapping[str, Any]) -> int | None:
    try:
        value = json.loads(view.get("private_metadata") or "{}").get("client_id")
        return int(value) if value is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


def timeline_message(
    *,
    name: str,
    company: str,
    items: Sequence[ResultItem],
    state: PageState,
    has_next: bool,
    total: int | None,
) -> dict[str, Any]:
    """A client's conversations, newest first, paged like search results."""
    title = f"Timeline of {name}" + (f" ({company})" if company else "")
    return results_message(
        title=title,
        items=items,
        state=state,
        has_next=has_next,
        total=total,
        empty_text=f"No conversations you can see are linked to {escape_mrkdwn(name)} yet.",
    )


# -- admins: delete and CSV import --------------------------------------------------------------

B_CSV_FILE = "cl_csv_file"
CSV_MAX_BYTES = 2 * 1024 * 1024  # a client list, not a mail archive
ERRORS_SHOWN = 40  # line-numbered errors listed in the modal; the rest are counted


def delete_modal(*, client_id: int, name: str, conversation_count: int) -> dict[str, Any]:
    linked = (
        f" Its {conversation_count} conversation{'s' if conversation_count != 1 else ''} "
        "stay, unlinked."
        if conversation_count
        else ""
    )
    return {
        "type": "modal",
        "callback_id": ids.VIEW_CLIENT_DELETE,
        "title": plain("Delete client", 24),
        "submit": plain("Delete", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"client_id": client_id}),
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "verbatim": True,
                    "text": f"Delete *{escape_mrkdwn(truncate(name, 200))}*, its addresses and "
                    f"domains?{linked} This cannot be undone.",
                },
            }
        ],
    }


def import_modal(error: str | None = None) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "verbatim": True,
                "text": "Upload a CSV file with a header row. Columns: `name` (required), "
                "`company`, `emails`, `domains` (several separated by `;` or spaces). A row "
                "whose name matches a client adds its addresses to that client.",
            },
        },
        {
            "type": "input",
            "block_id": B_CSV_FILE,
            "label": plain("CSV file"),
            "element": {
                "type": "file_input",
                "action_id": A,
                "filetypes": ["csv", "txt"],
                "max_files": 1,
            },
        },
    ]
    if error:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "verbatim": True,
                        "text": f":warning: {escape_mrkdwn(error)}",
                    }
                ],
            }
        )
    return {
        "type": "modal",
        "callback_id": ids.VIEW_CLIENT_IMPORT,
        "title": plain("Import clients", 24),
        "submit": plain("Import", 24),
        "close": plain("Cancel", 24),
        "blocks": blocks,
    }


def uploaded_file(values: Mapping[str, Any]) -> dict[str, Any] | None:
    files = ((values.get(B_CSV_FILE) or {}).get(A) or {}).get("files") or []
    return dict(files[0]) if files else None


def import_report_view(
    *, file_name: str, created: int, updated: int, errors: Sequence[tuple[int, str]]
) -> dict[str, Any]:
    """What the import did, with every error (up to a cap) by its line in the file."""
    head = (
        f"*{escape_mrkdwn(truncate(file_name, 150))}*: {created} client"
        f"{'s' if created != 1 else ''} added, {updated} updated"
        + (f", {len(errors)} line{'s' if len(errors) != 1 else ''} skipped." if errors else ".")
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "verbatim": True, "text": head}}
    ]
    if errors:
        lines = [
            f"• line {line}: {escape_mrkdwn(truncate(message, 200))}"
            for line, message in errors[:ERRORS_SHOWN]
        ]
        if len(errors) > ERRORS_SHOWN:
            lines.append(f"… and {len(errors) - ERRORS_SHOWN} more.")
        text = ""
        for line in lines:  # sections of at most 3,000 characters
            if len(text) + len(line) + 1 > 2900:
                blocks.append(
                    {"type": "section", "text": {"type": "mrkdwn", "verbatim": True, "text": text}}
                )
                text = ""
            text += ("\n" if text else "") + line
        if text:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "verbatim": True, "text": text}}
            )
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "verbatim": True,
                        "text": "Fix those lines and import the file again: rows already "
                        "imported are matched by name, so nothing doubles.",
                    }
                ],
            }
        )
    return {
        "type": "modal",
        "callback_id": ids.VIEW_CLIENT_IMPORT,
        "title": plain("Import clients", 24),
        "close": plain("Done", 24),
        "blocks": blocks,
    }
