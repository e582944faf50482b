"""Who may do what: admins manage accounts and templates; a person sees an account's mail only
if they are a member of its channel. Checked against Slack and cached briefly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Slack client is imported by whoever passes one in
    from slack_sdk import WebClient

CACHE_SECONDS = 60.0


class AccessDenied(Exception):
    """Raised by service functions; handlers turn it into a polite message."""


class _TTLCache:
    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._data: dict[object, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: object) -> object | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None or hit[0] < self._clock():
                return None
            return hit[1]

    def put(self, key: object, value: object) -> None:
        with self._lock:
            self._data[key] = (self._clock() + self._ttl, value)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class AccessControl:
    def __init__(self, admins: frozenset[str], ttl: float = CACHE_SECONDS) -> None:
        self._admins = admins
        self._cache = _TTLCache(ttl)

    def is_admin(self, client: WebClient, user_id: str) -> bool:
        """Configured admins, or Slack workspace admins / owners."""
        from slack_sdk.errors import SlackApiError  # loaded already: `client` is one

        if user_id in self._admins:
            return True
        key = ("admin", user_id)
        cached = self._cache.get(key)
        if cached is not None:
            return bool(cached)
        try:
            user = client.users_info(user=user_id)["user"]
            value = bool(user.get("is_admin") or user.get("is_owner"))
        except SlackApiError:
            value = False
        self._cache.put(key, value)
        return value

    def channel_members(self, client: WebClient, channel_id: str) -> frozenset[str]:
        from slack_sdk.errors import SlackApiError  # loaded already: `client` is one

        key = ("members", channel_id)
        cached = self._cache.get(key)
        if isinstance(cached, frozenset):
            return cached
        members: set[str] = set()
        cursor: str | None = None
        try:
            while True:
                resp = client.conversations_members(channel=channel_id, cursor=cursor, limit=1000)
                members.update(resp.get("members") or [])
                cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except SlackApiError:
            members = set()  # unknown channel or not allowed to look: nobody sees its mail
        value = frozenset(members)
        self._cache.put(key, value)
        return value

    def can_see_channel(self, client: WebClient, user_id: str, channel_id: str | None) -> bool:
        if not channel_id:
            return False
        return user_id in self.channel_members(client, channel_id)

    def visible_channels(self, client: WebClient, user_id: str, channel_ids: list[str]) -> set[str]:
        return {c for c in channel_ids if self.can_see_channel(client, user_id, c)}

    def forget(self) -> None:
        self._cache.clear()
