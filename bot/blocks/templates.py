"""Email templates in Slack: the App Home section and the create/edit modal (pure builders)."""

from __future__ import annotations

import json
from typing import Any, Protocol

from bot.blocks import ids
from bot.blocks.text import escape_mrkdwn, mrkdwn, plain, truncate
from bot.mail.richtext import clean_rich_text, is_blank, plain_to_rich_text

NAME_BLOCK = "tpl_name"
SUBJECT_BLOCK = "tpl_subject"
BODY_BLOCK = "tpl_body"
SHARE_BLOCK = "tpl_share"
SHARE_OPTION = "shared"
VALUE = "value"
HOME_LIMIT = 15  # two blocks each; the Home tab has 100 in all

# Kept in step with bot.templates.VARIABLES (a test checks); blocks stay import-free of it.
VARIABLE_HELP = (
    "`{{ client.name }}` `{{ client.company }}` · "
    "`{{ contact.name }}` `{{ contact.first_name }}` `{{ contact.email }}` · "
    "`{{ agent.name }}` `{{ agent.first_name }}` · "
    "`{{ account.email }}` `{{ account.name }}` · `{{ thread.subject }}` · `{{ today }}`\n"
    "A fallback for a missing value: `{{ contact.first_name | default('there') }}`. "
    "Conditions: `{% if client.company %}…{% endif %}`.\n"
    "Bold, lists, links and quotes are kept in the email. Write each `{{ … }}` in one style."
)
BODY_HINT = "Formatting is sent as formatted email with a plain-text copy; up to 10,000 characters."


class TemplateLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def shared(self) -> bool: ...
    @property
    def owner(self) -> str | None: ...


def may_change(tpl: TemplateLike, user_id: str | None, *, is_admin: bool) -> bool:
    """The author changes their own; admins manage the shared ones (the handlers check the
    same rule on the stored row: hiding a button is not a permission)."""
    return (user_id is not None and tpl.owner == user_id) or (is_admin and tpl.shared)


def picker_label(tpl: TemplateLike, user_id: str | None) -> str:
    """How the compose picker names a template: personal ones are marked."""
    return f"{tpl.name} (yours)" if not tpl.shared and tpl.owner == user_id else tpl.name


def template_section(
    templates: list[Any], *, is_admin: bool = True, user_id: str | None = None
) -> list[dict[str, Any]]:
    """ "Email Templates" for the App Home: everyone writes templates, personal or shared with
    the team; each person sees the shared ones and their own. Edit/Delete where allowed."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("Email Templates", 150)},
    ]
    intro = (
        f"{len(templates)} template(s): the team's shared ones and your own. Pick one in any "
        "reply or new email to fill it in."
        if templates
        else "No templates yet. Write one for answers you give often; share it with the team "
        "or keep it for yourself."
    )
    section: dict[str, Any] = {"type": "section", "text": mrkdwn(intro)}
    section["accessory"] = {
        "type": "button",
        "action_id": ids.HOME_TEMPLATE_NEW,
        "text": plain("New template", 75),
        "style": "primary",
        "value": "new",
    }
    blocks.append(section)
    for tpl in templates[:HOME_LIMIT]:
        subject = escape_mrkdwn(truncate(tpl.subject, 200)) if tpl.subject else "_no subject_"
        kind = "shared" if getattr(tpl, "shared", True) else "personal"
        blocks.append(
            {
                "type": "section",
                "text": mrkdwn(f"*{escape_mrkdwn(truncate(tpl.name, 200))}* · _{kind}_\n{subject}"),
            }
        )
        if may_change(tpl, user_id, is_admin=is_admin):
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"tpl_actions_{tpl.id}",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": ids.HOME_TEMPLATE_EDIT,
                            "text": plain("Edit", 75),
                            "value": str(tpl.id),
                        },
                        {
                            "type": "button",
                            "action_id": ids.HOME_TEMPLATE_DELETE,
                            "text": plain("Delete", 75),
                            "style": "danger",
                            "value": str(tpl.id),
                            "confirm": {
                                "title": plain("Delete template?", 100),
                                "text": plain(
                                    f"“{truncate(tpl.name, 150)}” will be gone"
                                    + (" for everyone. " if tpl.shared else ". ")
                                    + "Emails already sent are not affected.",
                                    300,
                                ),
                                "confirm": plain("Delete", 30),
                                "deny": plain("Keep", 30),
                                "style": "danger",
                            },
                        },
                    ],
                }
            )
    if len(templates) > HOME_LIMIT:
        blocks.append(
            {
                "type": "context",
                "elements": [mrkdwn(f"…and {len(templates) - HOME_LIMIT} more.")],
            }
        )
    return blocks


def _input(
    block_id: str, label: str, value: str, *, multiline: bool, max_length: int, hint: str = ""
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": VALUE,
        "multiline": multiline,
        "max_length": max_length,
    }
    if value:
        element["initial_value"] = value[:max_length]
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label),
        "element": element,
    }
    if block_id == SUBJECT_BLOCK:
        block["optional"] = True
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def _rich_input(value: dict[str, Any] | None, body: str) -> dict[str, Any]:
    rich = clean_rich_text(value if value is not None else plain_to_rich_text(body))
    element: dict[str, Any] = {"type": "rich_text_input", "action_id": VALUE}
    if not is_blank(rich):
        element["initial_value"] = rich
    return {
        "type": "input",
        "block_id": BODY_BLOCK,
        "label": plain("Body"),
        "hint": plain(BODY_HINT, 2000),
        "element": element,
    }


def _share_input(shared: bool) -> dict[str, Any]:
    option = {
        "text": plain("Share with the team", 75),
        "value": SHARE_OPTION,
        "description": plain("Everyone can pick it; admins can change it too.", 75),
    }
    element: dict[str, Any] = {"type": "checkboxes", "action_id": VALUE, "options": [option]}
    if shared:
        element["initial_options"] = [option]
    return {
        "type": "input",
        "block_id": SHARE_BLOCK,
        "optional": True,
        "label": plain("Who can use it"),
        "hint": plain("Not shared: only you see it, in your own compose picker.", 150),
        "element": element,
    }


def shared_of(values: dict[str, Any]) -> bool:
    chosen = ((values.get(SHARE_BLOCK) or {}).get(VALUE) or {}).get("selected_options") or []
    return any(o.get("value") == SHARE_OPTION for o in chosen)


def template_edit_view(
    template_id: int | None,
    *,
    name: str = "",
    subject: str = "",
    body: str = "",
    body_rich: dict[str, Any] | None = None,
    shared: bool = False,
) -> dict[str, Any]:
    meta = {"t": template_id} if template_id is not None else {}
    return {
        "type": "modal",
        "callback_id": ids.VIEW_TEMPLATE_EDIT,
        "title": plain("Edit template" if template_id else "New template", 24),
        "submit": plain("Save", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps(meta),
        "blocks": [
            _input(NAME_BLOCK, "Name", name, multiline=False, max_length=200),
            _input(
                SUBJECT_BLOCK,
                "Subject",
                subject,
                multiline=False,
                max_length=500,
                hint="Leave empty to keep the subject of the reply.",
            ),
            _rich_input(body_rich, body),
            _share_input(shared),
            {"type": "section", "text": mrkdwn("*Variables*\n" + VARIABLE_HELP)},
        ],
    }


def template_id_of(private_metadata: str | None) -> int | None:
    try:
        value = json.loads(private_metadata or "{}").get("t")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
