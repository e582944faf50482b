"""The fake workspace's state and its Web API methods (no HTTP here).

Each ``api_<method>`` takes the decoded arguments and returns the fields of an
``ok`` answer, or raises :class:`SlackError` with Slack's error name. The HTTP
layer (server.py) handles auth, recording and fault injection.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from .validate import (
    InvalidJson,
    first_problems,
    parse_json_arg,
    validate_message,
    validate_view_arg,
)

TEAM_ID = "T0FAKE0001"
TEAM_DOMAIN = "fake"
APP_ID = "A0FAKE0001"
BOT_ID = "B0FAKE0001"
TS_BASE_MICROS = 1_700_000_000_000_000
TRIGGER_TTL = 3.0
MAX_VIEW_STACK = 3


class SlackError(Exception):
    """An ``{"ok": false, "error": name}`` answer."""

    def __init__(self, error: str, messages: list[str] | None = None, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages or []
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error, **self.extra}
        if self.messages:
            body["response_metadata"] = {"messages": first_problems(self.messages)}
        return body


@dataclass
class Channel:
    id: str
    name: str
    members: list[str]
    is_private: bool = False
    is_im: bool = False
    is_archived: bool = False
    im_user: str | None = None

    def to_api(self, bot_user_id: str) -> dict[str, Any]:
        if self.is_im:
            return {"id": self.id, "is_im": True, "user": self.im_user, "is_open": True}
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": self.is_private,
            "is_archived": self.is_archived,
            "is_member": bot_user_id in self.members,
            "num_members": len(self.members),
            "context_team_id": TEAM_ID,
        }


@dataclass
class Trigger:
    id: str
    issued: float
    ttl: float
    user_id: str | None
    view_id: str | None
    used: bool = False


@dataclass
class StoredFile:
    id: str
    name: str
    title: str
    mimetype: str
    user: str
    content: bytes | None = None
    expected_length: int | None = None
    shares: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    created: int = 0


@dataclass
class ResponsePost:
    """One POST to a response_url, with what it was issued for."""

    id: str
    body: dict[str, Any]
    channel_id: str | None
    message_ts: str | None
    user_id: str | None


def _arg(args: dict[str, Any], name: str) -> Any:
    value = args.get(name)
    if value is None or value == "":
        raise SlackError("invalid_arguments", [f"[ERROR] missing required field: {name}"])
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def _int(value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise SlackError("invalid_arguments", [f"[ERROR] not an integer: {value!r}"]) from exc


def _json(args: dict[str, Any], name: str, expect: type) -> Any:
    if args.get(name) is None:
        return None
    try:
        return parse_json_arg(args[name], expect=expect)
    except InvalidJson as exc:
        raise SlackError("invalid_arguments", [f"[ERROR] {name}: {exc}"]) from exc


def _paginate(
    items: list[Any], args: dict[str, Any], default_limit: int, max_page: int = 1000
) -> tuple[list[Any], str]:
    """Slack-style cursor pagination: the cursor is an opaque offset. Slack may return fewer
    items than `limit` before the end of the list ("Fewer than the requested number of items
    may be returned"): a page holds at most `max_page` (Slack's documented maximum limit is
    1000; a test lowers `Workspace.max_page` to make the app follow the cursor)."""
    limit = _int(args.get("limit"), default_limit)
    if limit <= 0:
        limit = default_limit
    limit = min(limit, max_page)
    cursor = args.get("cursor") or ""
    start = 0
    if cursor:
        try:
            start = int(cursor.removeprefix("dXNlcj"))
        except ValueError as exc:
            raise SlackError("invalid_cursor") from exc
    page = items[start : start + limit]
    nxt = start + limit
    return page, (f"dXNlcj{nxt}" if nxt < len(items) else "")


class Workspace:
    """Users, channels, messages, views, files of one fake team. Thread-safe."""

    def __init__(self, base_url: Callable[[], str], bot_user_id: str = "UBOT") -> None:
        self._base_url = base_url
        self.lock = threading.RLock()
        self.bot_user_id = bot_user_id
        self.team_id = TEAM_ID
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, Channel] = {}
        # channel id -> ts -> message (insertion order is ts order)
        self.messages_by_channel: dict[str, dict[str, dict[str, Any]]] = {}
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.stacks: dict[str, list[str]] = {}  # root view id -> view ids, bottom first
        self.homes: dict[str, str] = {}  # user id -> view id
        self.triggers: dict[str, Trigger] = {}
        self.files: dict[str, StoredFile] = {}
        self.response_urls: dict[str, dict[str, str | None]] = {}
        self.responses: list[ResponsePost] = []
        self.trigger_ttl = TRIGGER_TTL
        self.max_page = 1000  # users.list / conversations.members items per page, at most
        self.clock: Callable[[], float] = time.monotonic
        self._ts_counter = itertools.count(1)
        self._ids = itertools.count(1)
        self.add_user(bot_user_id, "mailroom", is_bot=True)

    # -- ids ----------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    def next_ts(self) -> str:
        micros = TS_BASE_MICROS + next(self._ts_counter) * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    # -- seeding --------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        is_admin: bool = False,
        is_owner: bool = False,
        email: str | None = None,
        is_bot: bool = False,
        deleted: bool = False,
        real_name: str | None = None,
        tz: str = "Europe/London",
    ) -> dict[str, Any]:
        real = real_name or name.replace(".", " ").title()
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real,
            "deleted": deleted,
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_bot": is_bot,
            "is_app_user": False,
            "tz": tz,
            "profile": {
                "real_name": real,
                "display_name": name,
                "email": email
                if email is not None
                else (None if is_bot else f"{name}@example.com"),
            },
        }
        if is_bot:
            user["profile"]["bot_id"] = BOT_ID
        with self.lock:
            self.users[user_id] = user
        return copy.deepcopy(user)

    def add_channel(
        self,
        channel_id: str,
        name: str,
        members: list[str] | None = None,
        *,
        is_private: bool = False,
    ) -> Channel:
        with self.lock:
            ch = Channel(channel_id, name, list(members or []), is_private=is_private)
            self.channels[channel_id] = ch
            self.messages_by_channel.setdefault(channel_id, {})
            return ch

    # -- lookups --------------------------------------------------------------

    def channel(self, channel: Any) -> Channel:
        if not channel:
            raise SlackError("channel_not_found")
        ref = str(channel)
        if ref in self.channels:
            return self.channels[ref]
        name = ref.removeprefix("#")
        for ch in self.channels.values():
            if ch.name == name and not ch.is_im:
                return ch
        if ref in self.users:  # posting to a user id goes to the DM with them
            return self._open_dm(ref)
        raise SlackError("channel_not_found")

    def user(self, user_id: Any) -> dict[str, Any]:
        if user_id not in self.users:
            raise SlackError("user_not_found")
        return self.users[user_id]

    def _bot_can_post(self, ch: Channel) -> None:
        if ch.is_archived:
            raise SlackError("is_archived")
        if self.bot_user_id not in ch.members:
            raise SlackError("not_in_channel")

    def _open_dm(self, user_id: str) -> Channel:
        for ch in self.channels.values():
            if ch.is_im and ch.im_user == user_id:
                return ch
        ch = Channel(self.new_id("D"), "", [self.bot_user_id, user_id], is_im=True, im_user=user_id)
        self.channels[ch.id] = ch
        self.messages_by_channel[ch.id] = {}
        return ch

    # -- auth / users -----------------------------------------------------------

    def api_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Fake Team",
            "user": self.users[self.bot_user_id]["name"],
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def api_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"user": copy.deepcopy(self.user(_arg(args, "user")))}

    def api_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        page, cursor = _paginate(list(self.users.values()), args, 200, self.max_page)
        return {
            "members": copy.deepcopy(page),
            "response_metadata": {"next_cursor": cursor},
        }

    def api_users_lookupByEmail(self, args: dict[str, Any]) -> dict[str, Any]:
        email = str(_arg(args, "email")).lower()
        for user in self.users.values():
            if (user["profile"].get("email") or "").lower() == email:
                return {"user": copy.deepcopy(user)}
        raise SlackError("users_not_found")

    # -- conversations ----------------------------------------------------------

    def api_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self.channel(_arg(args, "channel")).to_api(self.bot_user_id)}

    def api_conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channel(_arg(args, "channel"))
        page, cursor = _paginate(list(ch.members), args, 100, self.max_page)
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def api_conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        types = set(str(args.get("types") or "public_channel").split(","))
        exclude_archived = _bool(args.get("exclude_archived"))
        chans = []
        for ch in self.channels.values():
            kind = "im" if ch.is_im else ("private_channel" if ch.is_private else "public_channel")
            if kind not in types or (exclude_archived and ch.is_archived):
                continue
            # Private channels are visible to the bot only when it is a member.
            if ch.is_private and self.bot_user_id not in ch.members:
                continue
            chans.append(ch.to_api(self.bot_user_id))
        page, cursor = _paginate(chans, args, 100)
        return {"channels": page, "response_metadata": {"next_cursor": cursor}}

    def api_conversations_join(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channel(_arg(args, "channel"))
        if ch.is_private or ch.is_im:
            raise SlackError("method_not_supported_for_channel_type")
        if ch.is_archived:
            raise SlackError("is_archived")
        if self.bot_user_id not in ch.members:
            ch.members.append(self.bot_user_id)
        return {"channel": ch.to_api(self.bot_user_id)}

    def api_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if args.get("channel"):
            return {"channel": self.channel(args["channel"]).to_api(self.bot_user_id)}
        if len(users) != 1:
            raise SlackError("invalid_arguments", ["[ERROR] the fake only opens 1:1 DMs"])
        self.user(users[0])
        return {"channel": self._open_dm(users[0]).to_api(self.bot_user_id)}

    def api_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channel(_arg(args, "channel"))
        top = [
            m
            for m in self.messages_by_channel[ch.id].values()
            if m.get("thread_ts") in (None, m["ts"])
        ]
        top.reverse()  # newest first, like Slack
        page, cursor = _paginate(top, args, 100)
        return {
            "messages": copy.deepcopy(page),
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    def api_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channel(_arg(args, "channel"))
        ts = str(_arg(args, "ts"))
        if ts not in self.messages_by_channel[ch.id]:
            raise SlackError("thread_not_found")
        parent = self.messages_by_channel[ch.id][ts]
        root = parent.get("thread_ts") or ts
        thread = [self.messages_by_channel[ch.id][root], *self.thread(ch.id, root)]
        page, cursor = _paginate(thread, args, 1000)
        return {
            "messages": copy.deepcopy(page),
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    # -- messages ---------------------------------------------------------------

    def thread(self, channel_id: str, ts: str) -> list[dict[str, Any]]:
        """Replies in the thread rooted at ts (not the parent), oldest first."""
        return [
            m
            for m in self.messages_by_channel.get(channel_id, {}).values()
            if m.get("thread_ts") == ts and m["ts"] != ts
        ]

    def _check_message(self, args: dict[str, Any]) -> tuple[Any, Any]:
        error, problems = validate_message(args)
        if error:
            raise SlackError(error, problems)
        return args.get("text") or "", _json(args, "blocks", list)

    def _new_message(
        self, ch: Channel, args: dict[str, Any], text: str, blocks: Any, user: str | None = None
    ) -> dict[str, Any]:
        ts = self.next_ts()
        author = user or self.bot_user_id
        msg: dict[str, Any] = {"type": "message", "ts": ts, "user": author}
        if user is None:
            msg.update({"bot_id": BOT_ID, "app_id": APP_ID})
        msg.update({"team": self.team_id, "text": text})
        if blocks is not None:
            msg["blocks"] = blocks
        attachments = _json(args, "attachments", list)
        if attachments:
            msg["attachments"] = attachments
        metadata = _json(args, "metadata", dict)
        if metadata:
            msg["metadata"] = metadata
        thread_ts = args.get("thread_ts")
        if thread_ts:
            parent = self.messages_by_channel[ch.id].get(str(thread_ts))
            if parent is None:
                # Real Slack may post to the channel instead; we fail loudly on purpose.
                raise SlackError("thread_not_found")
            root = parent.get("thread_ts") or parent["ts"]
            root_msg = self.messages_by_channel[ch.id][root]
            msg["thread_ts"] = root
            msg["parent_user_id"] = root_msg.get("user")
            root_msg["thread_ts"] = root
            root_msg["reply_count"] = root_msg.get("reply_count", 0) + 1
            root_msg["latest_reply"] = ts
            users = root_msg.setdefault("reply_users", [])
            if author not in users:
                users.append(author)
            if _bool(args.get("reply_broadcast")):
                msg["subtype"] = "thread_broadcast"
        self.messages_by_channel[ch.id][ts] = msg
        return msg

    def add_message(
        self,
        channel_id: str,
        user_id: str,
        text: str,
        *,
        thread_ts: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A message a person posted (no validation, no membership check)."""
        with self.lock:
            ch = self.channel(channel_id)
            self.user(user_id)
            msg = self._new_message(ch, {"thread_ts": thread_ts}, text, None, user=user_id)
            msg.update(extra)
            return copy.deepcopy(msg)

    def api_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channel(_arg(args, "channel"))
        self._bot_can_post(ch)
        text, blocks = self._check_message(args)
        msg = self._new_message(ch, args, text, blocks)
        return {"channel": ch.id, "ts": msg["ts"], "message": copy.deepcopy(msg)}

    def _own_message(self, args: dict[str, Any], cant: str) -> tuple[Channel, dict[str, Any]]:
        ch = self.channel(_arg(args, "channel"))
        msg = self.messages_by_channel[ch.id].get(str(_arg(args, "ts")))
        if msg is None:
            raise SlackError("message_not_found")
        if msg.get("user") != self.bot_user_id:
            raise SlackError(cant)
        return ch, msg

    def api_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        ch, msg = self._own_message(args, "cant_update_message")
        if (
            args.get("text") is None
            and args.get("blocks") is None
            and args.get("attachments") is None
        ):
            raise SlackError("no_text")
        text, blocks = self._check_message({**{"text": msg.get("text")}, **args})
        if args.get("text") is not None:
            msg["text"] = text
        if blocks is not None:
            msg["blocks"] = blocks
        attachments = _json(args, "attachments", list)
        if attachments is not None:
            msg["attachments"] = attachments
        msg["edited"] = {"user": self.bot_user_id, "ts": self.next_ts()}
        return {
            "channel": ch.id,
            "ts": msg["ts"],
            "text": msg["text"],
            "message": copy.deepcopy(msg),
        }

    def api_chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        ch, msg = self._own_message(args, "cant_delete_message")
        del self.messages_by_channel[ch.id][msg["ts"]]
        root = msg.get("thread_ts")
        if root and root != msg["ts"] and root in self.messages_by_channel[ch.id]:
            parent = self.messages_by_channel[ch.id][root]
            parent["reply_count"] = max(0, parent.get("reply_count", 1) - 1)
        return {"channel": ch.id, "ts": msg["ts"]}

    def api_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channel(_arg(args, "channel"))
        user = str(_arg(args, "user"))
        self.user(user)
        if user not in ch.members:
            raise SlackError("user_not_in_channel")
        self._bot_can_post(ch)
        text, blocks = self._check_message(args)
        ts = self.next_ts()
        self.ephemerals.append(
            {
                "channel": ch.id,
                "user": user,
                "ts": ts,
                "text": text,
                "blocks": blocks,
                "thread_ts": args.get("thread_ts"),
            }
        )
        return {"message_ts": ts}

    def api_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        ch = self.channel(_arg(args, "channel"))
        ts = str(_arg(args, "message_ts"))
        msg = self.messages_by_channel[ch.id].get(ts)
        if msg is None:
            raise SlackError("message_not_found")
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{ch.id}/p{ts.replace('.', '')}"
        root = msg.get("thread_ts")
        if root and root != ts:
            link += f"?thread_ts={root}&cid={ch.id}"
        return {"channel": ch.id, "permalink": link}

    # -- views ------------------------------------------------------------------

    def new_trigger_id(
        self, *, user_id: str | None = None, view_id: str | None = None, ttl: float | None = None
    ) -> str:
        with self.lock:
            tid = f"{next(self._ids)}.{int(time.time())}.{secrets.token_hex(16)}"
            self.triggers[tid] = Trigger(
                tid, self.clock(), self.trigger_ttl if ttl is None else ttl, user_id, view_id
            )
            return tid

    def expire_trigger_id(self, trigger_id: str) -> None:
        with self.lock:
            self.triggers[trigger_id].ttl = -1.0

    def _exchange_trigger(self, args: dict[str, Any]) -> Trigger:
        tid = args.get("trigger_id")
        if not tid:
            raise SlackError("invalid_arguments", ["[ERROR] missing required field: trigger_id"])
        trig = self.triggers.get(str(tid))
        if trig is None:
            raise SlackError("invalid_trigger_id")
        if trig.used:
            raise SlackError("exchanged_trigger_id")
        if self.clock() - trig.issued > trig.ttl:
            raise SlackError("expired_trigger_id")
        trig.used = True
        return trig

    def _check_view(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("view") is None:
            raise SlackError("invalid_arguments", ["[ERROR] missing required field: view"])
        error, problems = validate_view_arg(args["view"])
        if error:
            raise SlackError(error, problems)
        view: dict[str, Any] = _json(args, "view", dict)
        return view

    @staticmethod
    def _new_hash() -> str:
        return f"{int(time.time())}.{secrets.token_hex(4)}"

    def _store_view(
        self, spec: dict[str, Any], *, root: str | None, previous: str | None
    ) -> dict[str, Any]:
        view_id = self.new_id("V")
        view = {
            "id": view_id,
            "team_id": self.team_id,
            "type": spec["type"],
            "blocks": spec.get("blocks", []),
            "private_metadata": spec.get("private_metadata", ""),
            "callback_id": spec.get("callback_id", ""),
            "state": {"values": {}},
            "hash": self._new_hash(),
            "title": spec.get("title"),
            "clear_on_close": bool(spec.get("clear_on_close", False)),
            "notify_on_close": bool(spec.get("notify_on_close", False)),
            "close": spec.get("close"),
            "submit": spec.get("submit"),
            "previous_view_id": previous,
            "root_view_id": root or view_id,
            "app_id": APP_ID,
            "external_id": spec.get("external_id", ""),
            "app_installed_team_id": self.team_id,
            "bot_id": BOT_ID,
        }
        ext = view["external_id"]
        if ext and any(v["external_id"] == ext for v in self.views.values()):
            raise SlackError("duplicate_external_id")
        self.views[view_id] = view
        return view

    def api_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        spec = self._check_view(args)
        if spec["type"] != "modal":
            raise SlackError("invalid_arguments", ["[ERROR] views.open takes a modal"])
        trig = self._exchange_trigger(args)
        view = self._store_view(spec, root=None, previous=None)
        view["_user"] = trig.user_id
        self.stacks[view["id"]] = [view["id"]]
        return {"view": self.public_view(view)}

    def _stack_for(self, trig: Trigger) -> list[str]:
        if trig.view_id and trig.view_id in self.views:
            root = self.views[trig.view_id]["root_view_id"]
            if root in self.stacks:
                return self.stacks[root]
        if trig.user_id:  # fall back to the user's most recent open modal
            for root in reversed(list(self.stacks)):
                if self.views[root].get("_user") == trig.user_id and self.stacks[root]:
                    return self.stacks[root]
        raise SlackError(
            "invalid_trigger_id", ["[ERROR] trigger_id was not issued from an open modal"]
        )

    def api_views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        spec = self._check_view(args)
        if spec["type"] != "modal":
            raise SlackError("invalid_arguments", ["[ERROR] views.push takes a modal"])
        trig = self._exchange_trigger(args)
        stack = self._stack_for(trig)
        return {"view": self.public_view(self.push_view(stack, spec))}

    def push_view(self, stack: list[str], spec: dict[str, Any]) -> dict[str, Any]:
        if len(stack) >= MAX_VIEW_STACK:
            raise SlackError("push_limit_reached")
        top = self.views[stack[-1]]
        view = self._store_view(spec, root=top["root_view_id"], previous=top["id"])
        view["_user"] = top.get("_user")
        stack.append(view["id"])
        return view

    def _find_view(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("view_id"):
            view = self.views.get(str(args["view_id"]))
        elif args.get("external_id"):
            view = next(
                (v for v in self.views.values() if v["external_id"] == args["external_id"]), None
            )
        else:
            raise SlackError("invalid_arguments", ["[ERROR] view_id or external_id is required"])
        if view is None:
            raise SlackError("not_found")
        return view

    def replace_view(self, view: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        for key in ("blocks", "private_metadata", "callback_id", "title", "close", "submit"):
            view[key] = spec.get(
                key,
                []
                if key == "blocks"
                else ("" if key in ("private_metadata", "callback_id") else None),
            )
        view["external_id"] = spec.get("external_id", view["external_id"])
        view["clear_on_close"] = bool(spec.get("clear_on_close", False))
        view["notify_on_close"] = bool(spec.get("notify_on_close", False))
        view["hash"] = self._new_hash()
        return view

    def api_views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        spec = self._check_view(args)
        view = self._find_view(args)
        if spec["type"] != view["type"]:
            raise SlackError("invalid_arguments", ["[ERROR] cannot change a view's type"])
        if args.get("hash") and args["hash"] != view["hash"]:
            raise SlackError("hash_conflict")
        return {"view": self.public_view(self.replace_view(view, spec))}

    def api_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        spec = self._check_view(args)
        user_id = str(_arg(args, "user_id"))
        self.user(user_id)
        if spec["type"] != "home":
            raise SlackError("invalid_arguments", ["[ERROR] views.publish takes a home view"])
        current = self.views.get(self.homes.get(user_id, ""))
        if current is not None:
            if args.get("hash") and args["hash"] != current["hash"]:
                raise SlackError("hash_conflict")
            return {"view": self.public_view(self.replace_view(current, spec))}
        view = self._store_view(spec, root=None, previous=None)
        view["_user"] = user_id
        self.homes[user_id] = view["id"]
        return {"view": self.public_view(view)}

    @staticmethod
    def public_view(view: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in view.items() if not k.startswith("_")}

    def close_top(self, view_id: str, *, clear: bool = False) -> None:
        """The user closed (or submitted) the top view; clear closes the whole stack."""
        view = self.views.get(view_id)
        if view is None:
            return
        stack = self.stacks.get(view["root_view_id"])
        if not stack:
            return
        if clear:
            stack.clear()
        elif stack[-1] == view_id:
            stack.pop()

    def open_stack(self, user_id: str) -> list[dict[str, Any]]:
        """The user's most recent open modal stack, bottom first (empty if none)."""
        for root in reversed(list(self.stacks)):
            if self.views[root].get("_user") == user_id and self.stacks[root]:
                return [self.public_view(self.views[v]) for v in self.stacks[root]]
        return []

    # -- files ------------------------------------------------------------------

    def file_url(self, f: StoredFile) -> str:
        return f"{self._base_url()}files-pri/{self.team_id}-{f.id}/download/{quote(f.name)}"

    def file_to_api(self, f: StoredFile) -> dict[str, Any]:
        size = len(f.content) if f.content is not None else 0
        url = self.file_url(f)
        return {
            "id": f.id,
            "created": f.created,
            "timestamp": f.created,
            "name": f.name,
            "title": f.title,
            "mimetype": f.mimetype,
            "filetype": f.name.rsplit(".", 1)[-1].lower() if "." in f.name else "binary",
            "user": f.user,
            "size": size,
            "url_private": url.replace("/download/", "/"),
            "url_private_download": url,
            "permalink": f"https://{TEAM_DOMAIN}.slack.com/files/{f.user}/{f.id}/{quote(f.name)}",
            "channels": sorted(c for c in f.shares if not c.startswith("G")),
            "shares": {"public": copy.deepcopy(f.shares)} if f.shares else {},
            "sha256": hashlib.sha256(f.content or b"").hexdigest(),
        }

    def add_file(self, name: str, content: bytes, mimetype: str, user: str) -> dict[str, Any]:
        with self.lock:
            f = StoredFile(
                self.new_id("F"),
                name,
                name,
                mimetype,
                user,
                content=content,
                created=int(time.time()),
            )
            self.files[f.id] = f
            return self.file_to_api(f)

    def api_files_getUploadURLExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        name = str(_arg(args, "filename"))
        length = _int(_arg(args, "length"), 0)
        if length <= 0:
            raise SlackError("invalid_arguments", ["[ERROR] length must be positive"])
        f = StoredFile(
            self.new_id("F"),
            name,
            name,
            "application/octet-stream",
            self.bot_user_id,
            expected_length=length,
            created=int(time.time()),
        )
        self.files[f.id] = f
        return {"upload_url": f"{self._base_url()}upload/{f.id}", "file_id": f.id}

    def receive_upload(self, file_id: str, data: bytes, content_type: str | None) -> bool:
        with self.lock:
            f = self.files.get(file_id)
            if f is None or f.expected_length is None:
                return False
            f.content = data
            if content_type and not content_type.startswith(("multipart/", "application/x-www")):
                f.mimetype = content_type
            return True

    def api_files_completeUploadExternal(self, args: dict[str, Any]) -> dict[str, Any]:
        specs = _json(args, "files", list) or []
        if not specs:
            raise SlackError("invalid_arguments", ["[ERROR] missing required field: files"])
        files: list[StoredFile] = []
        for spec in specs:
            f = self.files.get(str(spec.get("id")))
            if f is None or f.content is None:
                raise SlackError("file_not_found")
            if f.expected_length is not None and len(f.content) != f.expected_length:
                raise SlackError("file_upload_size_mismatch")
            files.append(f)
        for f, spec in zip(files, specs, strict=True):
            if spec.get("title"):
                f.title = str(spec["title"])
        channels = [c for c in str(args.get("channels") or "").split(",") if c]
        if args.get("channel_id"):
            channels.insert(0, str(args["channel_id"]))
        for ref in channels:
            ch = self.channel(ref)
            self._bot_can_post(ch)
            share_args = {"thread_ts": args.get("thread_ts")}
            msg = self._new_message(ch, share_args, str(args.get("initial_comment") or ""), None)
            msg["upload"] = True
            msg["files"] = [self.file_to_api(f) for f in files]
            for f in files:
                share = {"ts": msg["ts"], "channel_name": ch.name, "team_id": self.team_id}
                if msg.get("thread_ts"):
                    share["thread_ts"] = msg["thread_ts"]
                f.shares.setdefault(ch.id, []).append(share)
        return {"files": [{"id": f.id, "title": f.title} for f in files]}

    def api_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        f = self.files.get(str(_arg(args, "file")))
        if f is None or f.content is None:
            raise SlackError("file_not_found")
        return {
            "file": self.file_to_api(f),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    def file_for_download(self, file_id: str) -> StoredFile | None:
        f = self.files.get(file_id)
        return f if f is not None and f.content is not None else None

    # -- response_url -----------------------------------------------------------

    def new_response_url(
        self,
        *,
        channel_id: str | None = None,
        message_ts: str | None = None,
        user_id: str | None = None,
    ) -> str:
        with self.lock:
            rid = secrets.token_hex(8)
            self.response_urls[rid] = {"channel": channel_id, "ts": message_ts, "user": user_id}
            return f"{self._base_url()}response_url/{rid}"

    def receive_response(self, rid: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        """Apply a response_url post as Slack does; returns (status, json body)."""
        with self.lock:
            origin = self.response_urls.get(rid)
            if origin is None:
                return 404, {"ok": False, "error": "expired_url"}
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                return 400, {"ok": False, "error": "invalid_payload"}
            if not isinstance(body, dict):
                return 400, {"ok": False, "error": "invalid_payload"}
            self.responses.append(
                ResponsePost(rid, body, origin["channel"], origin["ts"], origin["user"])
            )
            channel, ts = origin["channel"], origin["ts"]
            if _bool(body.get("delete_original")):
                if channel and ts:
                    self.messages_by_channel.get(channel, {}).pop(ts, None)
                return 200, {"ok": True}
            error, problems = validate_message(body)
            if error:
                return 200, SlackError(error, problems).body()
            shown = next((e for e in self.ephemerals if ts and e["ts"] == ts), None)
            if _bool(body.get("replace_original")) and shown is not None:
                # Replacing an ephemeral message the person sees (e.g. a prompt's buttons).
                shown["text"] = body.get("text") or ""
                shown["blocks"] = (
                    parse_json_arg(body["blocks"], expect=list) if body.get("blocks") else None
                )
                shown["replaced"] = shown.get("replaced", 0) + 1
            elif _bool(body.get("replace_original")) and channel and ts:
                msg = self.messages_by_channel.get(channel, {}).get(ts)
                if msg is None:
                    return 200, {"ok": False, "error": "message_not_found"}
                msg["text"] = body.get("text") or ""
                if body.get("blocks") is not None:
                    msg["blocks"] = parse_json_arg(body["blocks"], expect=list)
                else:
                    msg.pop("blocks", None)
            elif body.get("response_type") == "in_channel" and channel:
                self._new_message(
                    self.channels[channel],
                    body,
                    body.get("text") or "",
                    parse_json_arg(body["blocks"], expect=list) if body.get("blocks") else None,
                )
            else:
                self.ephemerals.append(
                    {
                        "channel": channel,
                        "user": origin["user"],
                        "ts": self.next_ts(),
                        "text": body.get("text") or "",
                        "blocks": body.get("blocks"),
                        "thread_ts": body.get("thread_ts"),
                    }
                )
            return 200, {"ok": True}


def api_methods(ws: Workspace) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    """Web API method name ("chat.postMessage") -> implementation."""
    table: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
    for attr in dir(ws):
        if attr.startswith("api_"):
            family, _, name = attr[4:].partition("_")
            table[f"{family}.{name}"] = getattr(ws, attr)
    return table
