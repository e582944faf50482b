"""Check Block Kit payloads the way Slack does, and say what is wrong.

Hand-written rules cover what Slack rejects (limits from docs.slack.dev and the
notes in shared/notes/slack.md section 3); slack_sdk.models then re-checks each
block that passed, as a second opinion. Problems are strings in Slack's own
``response_metadata.messages`` shape: ``[ERROR] <what> [json-pointer:/blocks/0/text]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100
MESSAGE_TEXT_MAX = 40_000
# Slack documents "250kb"; the decimal reading is the stricter one.
VIEW_MAX_BYTES = 250_000
ID_MAX = 255

# Which elements may sit where (docs.slack.dev block reference pages).
_SELECTS = {
    "static_select",
    "external_select",
    "users_select",
    "conversations_select",
    "channels_select",
    "multi_static_select",
    "multi_external_select",
    "multi_users_select",
    "multi_conversations_select",
    "multi_channels_select",
}
_COMMON_INTERACTIVE = _SELECTS | {
    "button",
    "checkboxes",
    "datepicker",
    "overflow",
    "radio_buttons",
    "timepicker",
    "workflow_button",
}
ACCESSORY_TYPES = _COMMON_INTERACTIVE | {"image"}
ACTIONS_TYPES = _COMMON_INTERACTIVE | {"datetimepicker", "rich_text_input"}
INPUT_TYPES = (_COMMON_INTERACTIVE - {"button", "overflow", "workflow_button"}) | {
    "datetimepicker",
    "email_text_input",
    "file_input",
    "number_input",
    "plain_text_input",
    "rich_text_input",
    "url_text_input",
}
VIEW_ONLY_BLOCKS = {"input"}
MESSAGE_ONLY_BLOCKS = {"file", "markdown", "table"}
KNOWN_BLOCKS = {
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
}

log = logging.getLogger(__name__)


def _problem(text: str, pointer: str) -> str:
    return f"[ERROR] {text} [json-pointer:{pointer}]"


@dataclass
class _Checker:
    """Walks one payload, collecting problems with their JSON pointers."""

    surface: str  # "message" | "modal" | "home"
    problems: list[str] = field(default_factory=list)

    def add(self, text: str, pointer: str) -> None:
        self.problems.append(_problem(text, pointer))

    # -- primitives -------------------------------------------------------

    def string(
        self,
        obj: dict[str, Any],
        key: str,
        pointer: str,
        *,
        max_len: int,
        required: bool = False,
        min_len: int = 0,
    ) -> None:
        if key not in obj or obj[key] is None:
            if required:
                self.add(f"missing required field: {key}", pointer)
            return
        value = obj[key]
        if not isinstance(value, str):
            self.add(f"{key} must be a string", f"{pointer}/{key}")
            return
        if len(value) > max_len:
            self.add(f"must be less than {max_len + 1} characters", f"{pointer}/{key}")
        if len(value) < min_len:
            self.add(f"must be at least {min_len} characters", f"{pointer}/{key}")

    def text(
        self,
        obj: dict[str, Any],
        key: str,
        pointer: str,
        *,
        max_len: int,
        required: bool = False,
        plain_only: bool = False,
    ) -> None:
        """A composition text object: {"type": plain_text|mrkdwn, "text": ...}."""
        if key not in obj or obj[key] is None:
            if required:
                self.add(f"missing required field: {key}", pointer)
            return
        self.text_value(obj[key], f"{pointer}/{key}", max_len=max_len, plain_only=plain_only)

    def text_value(self, value: Any, here: str, *, max_len: int, plain_only: bool = False) -> None:
        if not isinstance(value, dict):
            self.add("must be a text object", here)
            return
        kind = value.get("type")
        if kind not in ("plain_text", "mrkdwn"):
            self.add("must be either plain_text or mrkdwn", f"{here}/type")
            return
        if plain_only and kind != "plain_text":
            self.add("must be a plain_text object", f"{here}/type")
        if kind == "plain_text" and "verbatim" in value:
            self.add("verbatim is not allowed on plain_text", f"{here}/verbatim")
        if kind == "mrkdwn" and "emoji" in value:
            self.add("emoji is not allowed on mrkdwn", f"{here}/emoji")
        self.string(value, "text", here, max_len=max_len, required=True, min_len=1)

    def id_field(self, obj: dict[str, Any], key: str, pointer: str, *, required: bool) -> None:
        self.string(obj, key, pointer, max_len=ID_MAX, required=required, min_len=1)

    def array(
        self,
        obj: dict[str, Any],
        key: str,
        pointer: str,
        *,
        max_items: int,
        required: bool = False,
        min_items: int = 1,
    ) -> list[Any]:
        if key not in obj or obj[key] is None:
            if required:
                self.add(f"missing required field: {key}", pointer)
            return []
        value = obj[key]
        if not isinstance(value, list):
            self.add(f"{key} must be an array", f"{pointer}/{key}")
            return []
        if len(value) > max_items:
            self.add(f"no more than {max_items} items allowed", f"{pointer}/{key}")
        if len(value) < min_items:
            self.add(f"must provide at least {min_items} items", f"{pointer}/{key}")
        return value

    # -- composition objects ---------------------------------------------

    def option(self, opt: Any, pointer: str, *, plain_only: bool, with_url: bool) -> None:
        if not isinstance(opt, dict):
            self.add("option must be an object", pointer)
            return
        self.text(opt, "text", pointer, max_len=75, required=True, plain_only=plain_only)
        self.string(opt, "value", pointer, max_len=150, required=True)
        self.text(opt, "description", pointer, max_len=75, plain_only=plain_only)
        if with_url:
            self.string(opt, "url", pointer, max_len=3000)
        elif "url" in opt:
            self.add("url is only allowed in overflow options", f"{pointer}/url")

    def options(
        self,
        el: dict[str, Any],
        pointer: str,
        *,
        max_items: int,
        plain_only: bool,
        url: bool = False,
    ) -> list[dict[str, Any]]:
        """Check options / option_groups; return every option seen."""
        seen: list[dict[str, Any]] = []
        has_opts = el.get("options") is not None
        has_groups = el.get("option_groups") is not None
        if has_opts and has_groups:
            self.add("options and option_groups are mutually exclusive", pointer)
        for i, opt in enumerate(self.array(el, "options", pointer, max_items=max_items)):
            self.option(opt, f"{pointer}/options/{i}", plain_only=plain_only, with_url=url)
            if isinstance(opt, dict):
                seen.append(opt)
        for g, group in enumerate(self.array(el, "option_groups", pointer, max_items=100)):
            gp = f"{pointer}/option_groups/{g}"
            if not isinstance(group, dict):
                self.add("option group must be an object", gp)
                continue
            self.text(group, "label", gp, max_len=75, required=True, plain_only=True)
            for i, opt in enumerate(self.array(group, "options", gp, max_items=100, required=True)):
                self.option(opt, f"{gp}/options/{i}", plain_only=True, with_url=False)
                if isinstance(opt, dict):
                    seen.append(opt)
        return seen

    def initial_options(
        self, el: dict[str, Any], pointer: str, allowed: list[dict[str, Any]], *, multi: bool
    ) -> None:
        """Slack rejects an initial option that is not one of the options."""
        key = "initial_options" if multi else "initial_option"
        if key not in el:
            return
        given = el[key] if multi else [el[key]]
        if not isinstance(given, list):
            self.add(f"{key} must be an array", f"{pointer}/{key}")
            return
        values = {o.get("value") for o in allowed}
        for i, opt in enumerate(given):
            here = f"{pointer}/{key}/{i}" if multi else f"{pointer}/{key}"
            if not isinstance(opt, dict) or opt.get("value") not in values:
                self.add("initial option must match one of the provided options", here)

    def confirm(self, el: dict[str, Any], pointer: str) -> None:
        if "confirm" not in el:
            return
        c = el["confirm"]
        here = f"{pointer}/confirm"
        if not isinstance(c, dict):
            self.add("confirm must be an object", here)
            return
        self.text(c, "title", here, max_len=100, required=True, plain_only=True)
        self.text(c, "text", here, max_len=300, required=True)
        self.text(c, "confirm", here, max_len=30, required=True, plain_only=True)
        self.text(c, "deny", here, max_len=30, required=True, plain_only=True)
        if c.get("style") not in (None, "primary", "danger"):
            self.add("style must be primary or danger", f"{here}/style")

    # -- elements ---------------------------------------------------------

    def element(self, el: Any, pointer: str, allowed: set[str]) -> None:
        if not isinstance(el, dict):
            self.add("element must be an object", pointer)
            return
        kind = el.get("type")
        if kind not in allowed:
            self.add(f"unsupported element type: {kind!r}", f"{pointer}/type")
            return
        if kind != "image":
            self.id_field(el, "action_id", pointer, required=False)
        if "placeholder" in el:
            if kind in ("checkboxes", "radio_buttons", "button", "overflow", "file_input"):
                self.add(f"placeholder is not allowed on {kind}", f"{pointer}/placeholder")
            else:
                self.text(el, "placeholder", pointer, max_len=150, plain_only=True)
        self.confirm(el, pointer)
        check = _ELEMENT_CHECKS.get(kind)
        if check is not None:
            check(self, el, pointer)

    # -- blocks -----------------------------------------------------------

    def blocks(self, blocks: Any, pointer: str, max_blocks: int) -> None:
        if not isinstance(blocks, list):
            self.add("blocks must be an array", pointer)
            return
        if len(blocks) > max_blocks:
            self.add(f"no more than {max_blocks} items allowed", pointer)
        block_ids: dict[str, int] = {}
        for i, block in enumerate(blocks):
            here = f"{pointer}/{i}"
            before = len(self.problems)
            self.block(block, here)
            if isinstance(block, dict) and isinstance(block.get("block_id"), str):
                bid = block["block_id"]
                if bid in block_ids:
                    self.add(f"duplicate block_id {bid!r} (also at index {block_ids[bid]})", here)
                block_ids.setdefault(bid, i)
            if len(self.problems) == before and isinstance(block, dict):
                self.models_check(block, here)

    def block(self, block: Any, pointer: str) -> None:
        if not isinstance(block, dict):
            self.add("block must be an object", pointer)
            return
        kind = block.get("type")
        if kind not in KNOWN_BLOCKS:
            self.add(f"unsupported type: {kind!r}", f"{pointer}/type")
            return
        if self.surface == "message" and kind in VIEW_ONLY_BLOCKS:
            self.add(f"{kind} blocks are not allowed in messages", f"{pointer}/type")
            return
        if self.surface != "message" and kind in MESSAGE_ONLY_BLOCKS:
            self.add(f"{kind} blocks are only allowed in messages", f"{pointer}/type")
            return
        self.id_field(block, "block_id", pointer, required=False)
        _BLOCK_CHECKS[kind](self, block, pointer)
        self.unique_action_ids(block, pointer)

    def unique_action_ids(self, block: dict[str, Any], pointer: str) -> None:
        elements: list[Any] = []
        if isinstance(block.get("elements"), list) and block.get("type") == "actions":
            elements = block["elements"]
        seen: set[str] = set()
        for i, el in enumerate(elements):
            aid = el.get("action_id") if isinstance(el, dict) else None
            if isinstance(aid, str):
                if aid in seen:
                    self.add(f"duplicate action_id {aid!r} in block", f"{pointer}/elements/{i}")
                seen.add(aid)

    def models_check(self, block: dict[str, Any], pointer: str) -> None:
        """Second opinion from slack_sdk.models for blocks the rules above let through."""
        try:
            parsed = Block.parse(block)
            if parsed is not None:
                parsed.to_dict()
        except Exception as exc:  # the models raise several types; all mean "invalid"
            self.add(f"slack_sdk.models: {exc}", pointer)


# -- per-element rules ----------------------------------------------------


def _button(c: _Checker, el: dict[str, Any], p: str) -> None:
    c.text(el, "text", p, max_len=75, required=True, plain_only=True)
    c.string(el, "value", p, max_len=2000)
    c.string(el, "url", p, max_len=3000)
    c.string(el, "accessibility_label", p, max_len=75)
    if el.get("style") not in (None, "primary", "danger"):
        c.add("style must be primary or danger", f"{p}/style")


def _static(c: _Checker, el: dict[str, Any], p: str) -> None:
    if el.get("options") is None and el.get("option_groups") is None:
        c.add("missing required field: options or option_groups", p)
    opts = c.options(el, p, max_items=100, plain_only=True)
    multi = el["type"].startswith("multi_")
    c.initial_options(el, p, opts, multi=multi)
    _max_selected(c, el, p)


def _max_selected(c: _Checker, el: dict[str, Any], p: str) -> None:
    if "max_selected_items" in el:
        n = el["max_selected_items"]
        if not isinstance(n, int) or n < 1:
            c.add("max_selected_items must be a positive integer", f"{p}/max_selected_items")


def _external(c: _Checker, el: dict[str, Any], p: str) -> None:
    for key in ("initial_option",):
        if key in el:
            c.option(el[key], f"{p}/{key}", plain_only=True, with_url=False)
    for i, opt in enumerate(el.get("initial_options") or []):
        c.option(opt, f"{p}/initial_options/{i}", plain_only=True, with_url=False)
    if "min_query_length" in el and (
        not isinstance(el["min_query_length"], int) or el["min_query_length"] < 0
    ):
        c.add("min_query_length must be a non-negative integer", f"{p}/min_query_length")
    _max_selected(c, el, p)


def _choice(c: _Checker, el: dict[str, Any], p: str) -> None:
    opts = c.options(el, p, max_items=10, plain_only=False)
    if el.get("options") is None:
        c.add("missing required field: options", p)
    c.initial_options(el, p, opts, multi=el["type"] == "checkboxes")


def _overflow(c: _Checker, el: dict[str, Any], p: str) -> None:
    c.array(el, "options", p, max_items=5, min_items=1, required=True)
    for i, opt in enumerate(el.get("options") or []):
        c.option(opt, f"{p}/options/{i}", plain_only=True, with_url=True)


def _plain_text_input(c: _Checker, el: dict[str, Any], p: str) -> None:
    lo, hi = el.get("min_length"), el.get("max_length")
    if lo is not None and (not isinstance(lo, int) or not 0 <= lo <= 3000):
        c.add("min_length must be between 0 and 3000", f"{p}/min_length")
    if hi is not None and (not isinstance(hi, int) or not 1 <= hi <= 3000):
        c.add("max_length must be between 1 and 3000", f"{p}/max_length")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        c.add("min_length must not exceed max_length", p)
    initial = el.get("initial_value")
    if isinstance(initial, str) and isinstance(hi, int) and len(initial) > hi:
        c.add("initial_value is longer than max_length", f"{p}/initial_value")
    c.string(el, "initial_value", p, max_len=3000)


def _number_input(c: _Checker, el: dict[str, Any], p: str) -> None:
    if not isinstance(el.get("is_decimal_allowed"), bool):
        c.add("missing required field: is_decimal_allowed", p)


def _file_input(c: _Checker, el: dict[str, Any], p: str) -> None:
    n = el.get("max_files")
    if n is not None and (not isinstance(n, int) or not 1 <= n <= 10):
        c.add("max_files must be between 1 and 10", f"{p}/max_files")


def _image_element(c: _Checker, el: dict[str, Any], p: str) -> None:
    if "image_url" not in el and "slack_file" not in el:
        c.add("missing required field: image_url or slack_file", p)
    c.string(el, "image_url", p, max_len=3000)
    c.string(el, "alt_text", p, max_len=2000, required=True, min_len=1)


def _workflow_button(c: _Checker, el: dict[str, Any], p: str) -> None:
    c.text(el, "text", p, max_len=75, required=True, plain_only=True)
    if not isinstance(el.get("workflow"), dict):
        c.add("missing required field: workflow", p)


_ELEMENT_CHECKS: dict[str, Callable[[_Checker, dict[str, Any], str], None]] = {
    "button": _button,
    "static_select": _static,
    "multi_static_select": _static,
    "external_select": _external,
    "multi_external_select": _external,
    "multi_users_select": _max_selected,
    "multi_conversations_select": _max_selected,
    "multi_channels_select": _max_selected,
    "checkboxes": _choice,
    "radio_buttons": _choice,
    "overflow": _overflow,
    "plain_text_input": _plain_text_input,
    "number_input": _number_input,
    "file_input": _file_input,
    "image": _image_element,
    "workflow_button": _workflow_button,
}


# -- per-block rules ------------------------------------------------------


def _section(c: _Checker, b: dict[str, Any], p: str) -> None:
    if b.get("text") is None and b.get("fields") is None:
        c.add("must provide either text or fields", p)
    c.text(b, "text", p, max_len=3000)
    for i, f in enumerate(c.array(b, "fields", p, max_items=10)):
        c.text_value(f, f"{p}/fields/{i}", max_len=2000)
    if "accessory" in b:
        c.element(b["accessory"], f"{p}/accessory", ACCESSORY_TYPES)


def _divider(c: _Checker, b: dict[str, Any], p: str) -> None:
    return None


def _header(c: _Checker, b: dict[str, Any], p: str) -> None:
    c.text(b, "text", p, max_len=150, required=True, plain_only=True)


def _context(c: _Checker, b: dict[str, Any], p: str) -> None:
    for i, el in enumerate(c.array(b, "elements", p, max_items=10, required=True)):
        here = f"{p}/elements/{i}"
        if isinstance(el, dict) and el.get("type") == "image":
            c.element(el, here, {"image"})
        else:
            c.text_value(el, here, max_len=3000)


def _actions(c: _Checker, b: dict[str, Any], p: str) -> None:
    for i, el in enumerate(c.array(b, "elements", p, max_items=25, required=True)):
        c.element(el, f"{p}/elements/{i}", ACTIONS_TYPES)


def _input(c: _Checker, b: dict[str, Any], p: str) -> None:
    c.text(b, "label", p, max_len=2000, required=True, plain_only=True)
    c.text(b, "hint", p, max_len=2000, plain_only=True)
    if "element" not in b:
        c.add("missing required field: element", p)
    else:
        c.element(b["element"], f"{p}/element", INPUT_TYPES)
    for key in ("optional", "dispatch_action"):
        if key in b and not isinstance(b[key], bool):
            c.add(f"{key} must be a boolean", f"{p}/{key}")


def _image(c: _Checker, b: dict[str, Any], p: str) -> None:
    _image_element(c, b, p)
    c.text(b, "title", p, max_len=2000, plain_only=True)


def _rich_text(c: _Checker, b: dict[str, Any], p: str) -> None:
    c.array(b, "elements", p, max_items=10_000, required=True, min_items=0)


def _markdown(c: _Checker, b: dict[str, Any], p: str) -> None:
    c.string(b, "text", p, max_len=12_000, required=True, min_len=1)


def _file(c: _Checker, b: dict[str, Any], p: str) -> None:
    c.string(b, "external_id", p, max_len=ID_MAX, required=True, min_len=1)
    if b.get("source") != "remote":
        c.add("source must be remote", f"{p}/source")


def _video(c: _Checker, b: dict[str, Any], p: str) -> None:
    c.string(b, "alt_text", p, max_len=2000, required=True, min_len=1)
    c.text(b, "title", p, max_len=200, required=True, plain_only=True)
    c.string(b, "thumbnail_url", p, max_len=3000, required=True)
    c.string(b, "video_url", p, max_len=3000, required=True)


def _table(c: _Checker, b: dict[str, Any], p: str) -> None:
    c.array(b, "rows", p, max_items=100, required=True)


_BLOCK_CHECKS: dict[str, Callable[[_Checker, dict[str, Any], str], None]] = {
    "section": _section,
    "divider": _divider,
    "header": _header,
    "context": _context,
    "actions": _actions,
    "input": _input,
    "image": _image,
    "rich_text": _rich_text,
    "markdown": _markdown,
    "file": _file,
    "video": _video,
    "table": _table,
}


# -- public API -----------------------------------------------------------


class InvalidJson(ValueError):
    """A blocks/view argument that is not JSON of the right shape."""


def parse_json_arg(value: Any, *, expect: type) -> Any:
    """Accept a JSON string or an already-decoded value, as Slack does for form posts."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InvalidJson(f"not valid JSON: {exc}") from exc
    if not isinstance(value, expect):
        raise InvalidJson(f"expected a JSON {expect.__name__}, got {type(value).__name__}")
    return value


def validate_message_blocks(blocks: Any) -> list[str]:
    """Problems Slack would report for these message blocks (empty list: accepted)."""
    checker = _Checker("message")
    checker.blocks(blocks, "/blocks", MESSAGE_MAX_BLOCKS)
    return checker.problems


def validate_message(args: dict[str, Any]) -> tuple[str | None, list[str]]:
    """Check a chat.postMessage / chat.update / postEphemeral / response_url body.

    Returns (slack_error_name or None, problems).
    """
    blocks = args.get("blocks")
    text = args.get("text")
    if blocks is not None:
        try:
            blocks = parse_json_arg(blocks, expect=list)
        except InvalidJson as exc:
            return "invalid_blocks_format", [_problem(str(exc), "/blocks")]
        problems = validate_message_blocks(blocks)
        if problems:
            return "invalid_blocks", problems
    if isinstance(text, str) and len(text) > MESSAGE_TEXT_MAX:
        return "msg_too_long", [
            _problem(f"text must be at most {MESSAGE_TEXT_MAX} characters", "/text")
        ]
    has_attachments = bool(args.get("attachments"))
    if not text and not blocks and not has_attachments:
        return "no_text", [_problem("text, blocks or attachments is required", "/")]
    return None, []


def validate_view(view: Any) -> list[str]:
    """Problems Slack would report for a modal or Home tab view (empty: accepted)."""
    if not isinstance(view, dict):
        return [_problem("view must be an object", "/view")]
    kind = view.get("type")
    if kind not in ("modal", "home"):
        return [_problem("type must be either modal or home", "/view/type")]
    checker = _Checker(kind)
    p = "/view"
    if kind == "modal":
        checker.text(view, "title", p, max_len=24, required=True, plain_only=True)
        checker.text(view, "submit", p, max_len=24, plain_only=True)
        checker.text(view, "close", p, max_len=24, plain_only=True)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and view.get("submit") is None:
            checker.add("submit is required when an input block is present", f"{p}/submit")
    else:
        for key in ("submit", "close"):
            if key in view:
                checker.add(f"{key} is not allowed in a home view", f"{p}/{key}")
    checker.string(view, "private_metadata", p, max_len=3000)
    checker.id_field(view, "callback_id", p, required=False)
    checker.id_field(view, "external_id", p, required=False)
    if "blocks" not in view:
        checker.add("missing required field: blocks", p)
    else:
        checker.blocks(view["blocks"], f"{p}/blocks", VIEW_MAX_BLOCKS)
    if not checker.problems:
        try:
            View(**view).to_dict()
        except Exception as exc:  # see _Checker.models_check
            checker.add(f"slack_sdk.models: {exc}", p)
    return checker.problems


def view_size(view: dict[str, Any]) -> int:
    return len(json.dumps(view, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def validate_view_arg(view: Any) -> tuple[str | None, list[str]]:
    """Check a views.* ``view`` argument; returns (slack_error_name or None, problems)."""
    try:
        view = parse_json_arg(view, expect=dict)
    except InvalidJson as exc:
        return "invalid_arguments", [_problem(str(exc), "/view")]
    if view_size(view) > VIEW_MAX_BYTES:
        return "view_too_large", [_problem(f"view exceeds {VIEW_MAX_BYTES} bytes", "/view")]
    problems = validate_view(view)
    return ("invalid_arguments", problems) if problems else (None, [])


def validate_options_response(body: Any) -> list[str]:
    """Problems in an options-load (block_suggestion) ack body."""
    if not isinstance(body, dict):
        return [_problem("options response must be a JSON object", "/")]
    checker = _Checker("modal")
    if body.get("options") is None and body.get("option_groups") is None:
        checker.add("missing required field: options or option_groups", "")
    checker.options(body, "", max_items=100, plain_only=True)
    return checker.problems


def first_problems(problems: Iterable[str], limit: int = 20) -> list[str]:
    """Slack caps the messages it returns; so do we, to keep errors readable."""
    return list(problems)[:limit]
