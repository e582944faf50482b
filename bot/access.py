"""Who may do what: admins manage accounts and templates; a person sees an account's mail only
if they are a member of its channel. Checked against Slack and cached briefly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the Slack client is imported by whoever passes one in
    from slack_sdk import WebClient

log = logging.getLogger(__name__)

CACHE_SECONDS = 60.0
# The workspace's names change rarely and users.list is rate limited (Tier 2): the directory
# the Assign picker filters is kept longer than memberships, which are checked every minute.
DIRECTORY_SECONDS = 600.0
# users.list pages walked for the directory (200 people a page).
DIRECTORY_PAGES = 20


@dataclass(frozen=True)
class SlackUser:
    """One workspace member as the Assign picker shows and filters them."""

    user_id: str
    handle: str  # the `name` (legacy username)
    display_name: str
    real_name: str
    is_bot: bool = False
    deleted: bool = False

    @property
    def label(self) -> str:
        return self.real_name or self.display_name or self.handle or self.user_id


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
    def __init__(
        self,
        admins: frozenset[str],
        ttl: float = CACHE_SECONDS,
        directory_ttl: float = DIRECTORY_SECONDS,
    ) -> None:
        self._admins = admins
        self._cache = _TTLCache(ttl)
        self._directory = _TTLCache(directory_ttl)

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

    def directory(self, client: WebClient) -> dict[str, SlackUser]:
        """The workspace's people by user id (users.list, at most `DIRECTORY_PAGES` pages),
        cached for `DIRECTORY_SECONDS`. A failed walk keeps what it read and is not cached."""
        cached = self._directory.get("people")
        if isinstance(cached, dict):
            return cached
        from slack_sdk.errors import SlackApiError  # loaded already: `client` is one

        people: dict[str, SlackUser] = {}
        complete = False
        try:
            cursor: str | None = None
            for _ in range(DIRECTORY_PAGES):
                page = client.users_list(limit=200, cursor=cursor)
                for u in page.get("members") or []:
                    profile = u.get("profile") or {}
                    uid = str(u.get("id"))
                    people[uid] = SlackUser(
                        user_id=uid,
                        handle=str(u.get("name") or ""),
                        display_name=str(profile.get("display_name") or ""),
                        real_name=str(profile.get("real_name") or u.get("real_name") or ""),
                        is_bot=bool(u.get("is_bot")) or uid == "USLACKBOT",
                        deleted=bool(u.get("deleted")),
                    )
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
            complete = True
        except SlackApiError as exc:
            log.info("users.list failed: %s", exc.response.get("error"))
        if complete:
            self._directory.put("people", people)
        return people

    def forget(self) -> None:
        self._cache.clear()
        self._directory.clear()
