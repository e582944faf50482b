"""Shapes of the requests Slack sends to an app (Events API, commands, interactivity).

Pure builders, following docs.slack.dev's documented payloads; the driver signs
and sends them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from .workspace import TEAM_DOMAIN

VERIFICATION_TOKEN = "fake-verification-token"


def user_ref(user: dict[str, Any] | None, user_id: str, team_id: str) -> dict[str, Any]:
    name = (user or {}).get("name", user_id.lower())
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def team_ref(team_id: str) -> dict[str, Any]:
    return {"id": team_id, "domain": TEAM_DOMAIN}


def action_ts() -> str:
    return f"{time.time():.6f}"


def event_envelope(
    event: dict[str, Any], *, team_id: str, app_id: str, bot_user_id: str, event_id: str
) -> dict[str, Any]:
    event = dict(event)
    event.setdefault("event_ts", action_ts())
    return {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": None,
        "api_app_id": app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-fake-{event_id}",
    }


def iter_elements(blocks: list[Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(block_id, element) for every interactive element in the blocks."""
    for block in blocks or []:
        if not isinstance(block, dict):
            continue
        bid = block.get("block_id")
        if isinstance(block.get("accessory"), dict):
            yield bid, block["accessory"]
        if isinstance(block.get("element"), dict):
            yield bid, block["element"]
        if block.get("type") == "actions":
            for el in block.get("elements") or []:
                if isinstance(el, dict):
                    yield bid, el


def find_element(
    blocks: list[Any], action_id: str, block_id: str | None = None
) -> tuple[str | None, dict[str, Any]]:
    """Locate the element a person would click; LookupError if the UI has none."""
    for bid, el in iter_elements(blocks):
        if el.get("action_id") == action_id and (block_id is None or bid == block_id):
            return bid, el
    where = f" in block {block_id!r}" if block_id else ""
    raise LookupError(f"no element with action_id {action_id!r}{where} in these blocks")


def action_item(
    el: dict[str, Any] | None,
    *,
    action_id: str,
    block_id: str | None,
    value: Any,
    selected_option: dict[str, Any] | None,
    selected_options: list[dict[str, Any]] | None,
    action_type: str | None,
) -> dict[str, Any]:
    """One entry of ``actions[]`` as Slack sends it for the element's type."""
    kind = action_type or (el or {}).get("type") or "button"
    item: dict[str, Any] = {
        "action_id": action_id,
        "block_id": block_id or "fake_block",
        "type": kind,
        "action_ts": action_ts(),
    }
    if kind == "button":
        item["text"] = (el or {}).get("text") or {"type": "plain_text", "text": action_id}
        if value is None and el is not None:
            value = el.get("value")
        if value is not None:
            item["value"] = value
        if el and el.get("style"):
            item["style"] = el["style"]
    elif kind in ("static_select", "external_select", "overflow", "radio_buttons"):
        item["selected_option"] = selected_option or _option_for(el, value)
    elif kind in ("multi_static_select", "multi_external_select", "checkboxes"):
        item["selected_options"] = selected_options or []
    elif kind == "users_select":
        item["selected_user"] = value
    elif kind == "conversations_select":
        item["selected_conversation"] = value
    elif kind == "channels_select":
        item["selected_channel"] = value
    elif kind == "datepicker":
        item["selected_date"] = value
    elif kind == "timepicker":
        item["selected_time"] = value
    elif value is not None:
        item["value"] = value
    return item


def _option_for(el: dict[str, Any] | None, value: Any) -> dict[str, Any] | None:
    """The option of ``el`` whose value is ``value`` (what Slack echoes back)."""
    if value is None:
        return None
    opts = list((el or {}).get("options") or [])
    for group in (el or {}).get("option_groups") or []:
        opts.extend(group.get("options") or [])
    for opt in opts:
        if opt.get("value") == value:
            return dict(opt)
    if el is not None and el.get("type") != "external_select":
        raise LookupError(f"no option with value {value!r} in element {el.get('action_id')!r}")
    return {"text": {"type": "plain_text", "text": str(value)}, "value": value}


def state_values(view: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Expand ``values`` into Slack's ``state.values``.

    Full entries (dicts with "type") pass through. A bare value is a shortcut:
    a string for text inputs, an option value for selects/radios, a list of
    option values for multi-selects/checkboxes, a list of file dicts for file_input.
    Unknown block/action ids raise LookupError: the person could not have typed there.
    """
    inputs = {
        (b.get("block_id"), b["element"].get("action_id")): b["element"]
        for b in view.get("blocks") or []
        if b.get("type") == "input" and isinstance(b.get("element"), dict)
    }
    out: dict[str, Any] = {}
    for block_id, per_action in values.items():
        for action_id, given in per_action.items():
            el = inputs.get((block_id, action_id))
            if el is None:
                raise LookupError(f"view has no input {block_id!r}/{action_id!r}")
            out.setdefault(block_id, {})[action_id] = _state_entry(el, given)
    return out


def _state_entry(el: dict[str, Any], given: Any) -> dict[str, Any]:
    if isinstance(given, dict) and "type" in given:
        return given
    kind = el.get("type", "plain_text_input")
    if kind in ("static_select", "external_select", "radio_buttons"):
        return {"type": kind, "selected_option": _option_for(el, given)}
    if kind in ("multi_static_select", "multi_external_select", "checkboxes"):
        opts = [_option_for(el, v) for v in given or []]
        return {"type": kind, "selected_options": opts}
    if kind == "users_select":
        return {"type": kind, "selected_user": given}
    if kind == "multi_users_select":
        return {"type": kind, "selected_users": list(given or [])}
    if kind in ("conversations_select", "channels_select"):
        key = "selected_conversation" if kind.startswith("conv") else "selected_channel"
        return {"type": kind, key: given}
    if kind == "datepicker":
        return {"type": kind, "selected_date": given}
    if kind == "timepicker":
        return {"type": kind, "selected_time": given}
    if kind == "file_input":
        return {"type": kind, "files": list(given or [])}
    if kind == "rich_text_input" and isinstance(given, str):
        return {"type": kind, "rich_text_value": rich_text_of(given)}
    return {"type": kind, "value": given}


def rich_text_of(text: str) -> dict[str, Any]:
    """A rich_text value holding plain text, as a rich_text_input sends it."""
    return {
        "type": "rich_text",
        "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}],
    }
