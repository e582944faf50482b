"""SlackDriver: sends what Slack sends to an app, signed, over real HTTP.

Every method returns a :class:`DriverResponse` ``(status, headers, body)``.
Interactions get trigger_ids and response_urls issued by the FakeSlack, so the
app's follow-up calls (views.open, response_url posts) are checked by it.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import urllib.error
import urllib.request
from typing import Any, NamedTuple
from urllib.parse import urlencode

from .payloads import (
    VERIFICATION_TOKEN,
    action_item,
    event_envelope,
    find_element,
    state_values,
    team_ref,
    user_ref,
)
from .server import FakeSlack

STALE_SECONDS = 10 * 60  # Bolt rejects timestamps older than 5 minutes


class DriverResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


def sign(signing_secret: str, timestamp: str, body: str) -> str:
    """Slack's v0 request signature."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


class SlackDriver:
    def __init__(
        self, base_url: str, signing_secret: str, fake: FakeSlack, timeout: float = 10.0
    ) -> None:
        self.base_url = base_url
        self.signing_secret = signing_secret
        self.fake = fake
        self.timeout = timeout
        self._event_ids = itertools.count(1)

    # -- transport ----------------------------------------------------------------

    def post(
        self,
        body: str,
        content_type: str,
        *,
        extra_headers: dict[str, str] | None = None,
        bad_signature: bool = False,
        stale: bool = False,
    ) -> DriverResponse:
        """POST a signed body to the app; the knobs break the signature on purpose."""
        ts = str(int(time.time()) - (STALE_SECONDS if stale else 0))
        signature = sign(self.signing_secret, ts, body)
        if bad_signature:
            signature = sign(self.signing_secret + "-wrong", ts, body)
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": signature,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            **(extra_headers or {}),
        }
        req = urllib.request.Request(
            self.base_url, data=body.encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return DriverResponse(resp.status, dict(resp.headers.items()), resp.read().decode())
        except urllib.error.HTTPError as exc:
            return DriverResponse(exc.code, dict(exc.headers.items()), exc.read().decode())

    def _interactive(
        self, payload: dict[str, Any], *, bad_signature: bool = False, stale: bool = False
    ) -> DriverResponse:
        body = urlencode({"payload": json.dumps(payload)})
        return self.post(
            body,
            "application/x-www-form-urlencoded",
            bad_signature=bad_signature,
            stale=stale,
        )

    def _user(self, user_id: str) -> dict[str, Any]:
        with self.fake.ws.lock:
            return user_ref(self.fake.ws.users.get(user_id), user_id, self.fake.team_id)

    def _base(self, kind: str, user_id: str) -> dict[str, Any]:
        return {
            "type": kind,
            "user": self._user(user_id),
            "api_app_id": self.fake.app_id,
            "token": VERIFICATION_TOKEN,
            "team": team_ref(self.fake.team_id),
            "enterprise": None,
            "is_enterprise_install": False,
        }

    def _view(self, view: dict[str, Any] | str) -> dict[str, Any]:
        """A view as Slack would send it: the fake's stored copy when it has one."""
        view_id = view if isinstance(view, str) else view.get("id")
        stored = self.fake.view(view_id) if view_id else None
        if stored is not None:
            return stored
        if isinstance(view, str):
            raise LookupError(f"the fake has no view {view!r}")
        return dict(view)

    # -- Events API -------------------------------------------------------------------

    def event(
        self,
        event: dict[str, Any],
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        bad_signature: bool = False,
        stale: bool = False,
    ) -> DriverResponse:
        """Deliver an ``event_callback``; pass the same event_id with retry_num to replay."""
        eid = event_id or f"Ev{next(self._event_ids):010d}"
        envelope = event_envelope(
            event,
            team_id=self.fake.team_id,
            app_id=self.fake.app_id,
            bot_user_id=self.fake.bot_user_id,
            event_id=eid,
        )
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        return self.post(
            json.dumps(envelope),
            "application/json",
            extra_headers=headers,
            bad_signature=bad_signature,
            stale=stale,
        )

    def url_verification(self, challenge: str = "fake-challenge") -> DriverResponse:
        body = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
        return self.post(json.dumps(body), "application/json")

    # -- slash commands ---------------------------------------------------------------

    def command(
        self,
        command: str = "/inbox",
        text: str = "",
        user_id: str = "UMEMBER",
        channel_id: str = "CINBOX",
        bad_signature: bool = False,
        stale: bool = False,
    ) -> DriverResponse:
        with self.fake.ws.lock:
            ch = self.fake.ws.channels.get(channel_id)
            channel_name = ch.name if ch is not None else "unknown"
        form = {
            "token": VERIFICATION_TOKEN,
            "team_id": self.fake.team_id,
            "team_domain": team_ref(self.fake.team_id)["domain"],
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": self._user(user_id)["username"],
            "command": command,
            "text": text,
            "api_app_id": self.fake.app_id,
            "is_enterprise_install": "false",
            "response_url": self.fake.new_response_url(channel_id=channel_id, user_id=user_id),
            "trigger_id": self.fake.new_trigger_id(user_id=user_id),
        }
        return self.post(
            urlencode(form),
            "application/x-www-form-urlencoded",
            bad_signature=bad_signature,
            stale=stale,
        )

    # -- interactivity ----------------------------------------------------------------

    def block_action(
        self,
        user_id: str,
        action_id: str,
        value: Any = None,
        *,
        block_id: str | None = None,
        message: dict[str, Any] | None = None,
        message_ts: str | None = None,
        view: dict[str, Any] | str | None = None,
        channel_id: str | None = None,
        selected_option: dict[str, Any] | None = None,
        selected_options: list[dict[str, Any]] | None = None,
        action_type: str | None = None,
        state: dict[str, Any] | None = None,
        bad_signature: bool = False,
        stale: bool = False,
    ) -> DriverResponse:
        """A click/selection on an element of a message (channel_id + message or
        message_ts) or of a view. The element must exist there (LookupError if not),
        except when neither message nor view is given.
        """
        payload = self._base("block_actions", user_id)
        blocks: list[Any] | None = None
        if message is None and message_ts is not None:
            if channel_id is None:
                raise ValueError("message_ts needs channel_id")
            message = self.fake.message(channel_id, message_ts)
            if message is None:
                raise LookupError(f"the fake has no message {channel_id}/{message_ts}")
        view_obj = self._view(view) if view is not None else None
        if message is not None:
            if channel_id is None:
                raise ValueError("a message action needs channel_id")
            blocks = message.get("blocks") or []
            # An ephemeral message (chat.postEphemeral): Slack sends no `message` for it.
            ephemeral = any(e["ts"] == message["ts"] for e in self.fake.ephemerals)
            payload["container"] = {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": channel_id,
                "is_ephemeral": ephemeral,
            }
            if message.get("thread_ts"):
                payload["container"]["thread_ts"] = message["thread_ts"]
            with self.fake.ws.lock:
                ch = self.fake.ws.channels.get(channel_id)
                payload["channel"] = {"id": channel_id, "name": ch.name if ch else "unknown"}
            if not ephemeral:
                payload["message"] = message
            payload["response_url"] = self.fake.new_response_url(
                channel_id=channel_id, message_ts=message["ts"], user_id=user_id
            )
            payload["state"] = {"values": state or {}}
        elif view_obj is not None:
            blocks = view_obj.get("blocks") or []
            payload["container"] = {"type": "view", "view_id": view_obj.get("id")}
            if state is not None:
                view_obj["state"] = {"values": state_values(view_obj, state)}
            payload["view"] = view_obj
        elif channel_id is not None:
            payload["channel"] = {"id": channel_id, "name": "unknown"}
            payload["container"] = {"type": "message", "channel_id": channel_id}
            payload["response_url"] = self.fake.new_response_url(
                channel_id=channel_id, user_id=user_id
            )
        el: dict[str, Any] | None = None
        if blocks is not None:
            block_id, el = find_element(blocks, action_id, block_id)
        payload["trigger_id"] = self.fake.new_trigger_id(
            user_id=user_id, view_id=view_obj.get("id") if view_obj else None
        )
        payload["actions"] = [
            action_item(
                el,
                action_id=action_id,
                block_id=block_id,
                value=value,
                selected_option=selected_option,
                selected_options=selected_options,
                action_type=action_type,
            )
        ]
        return self._interactive(payload, bad_signature=bad_signature, stale=stale)

    def view_submission(
        self,
        user_id: str,
        view: dict[str, Any] | str,
        values: dict[str, Any] | None = None,
        bad_signature: bool = False,
        stale: bool = False,
    ) -> DriverResponse:
        """Submit a modal. The fake then applies the ack (close / update / push / errors)."""
        view_obj = self._view(view)
        view_obj["state"] = {"values": state_values(view_obj, values or {})}
        payload = self._base("view_submission", user_id)
        payload["trigger_id"] = self.fake.new_trigger_id(
            user_id=user_id, view_id=view_obj.get("id")
        )
        payload["view"] = view_obj
        payload["response_urls"] = []
        resp = self._interactive(payload, bad_signature=bad_signature, stale=stale)
        if view_obj.get("id") and not (bad_signature or stale):
            self.fake.apply_view_ack(view_obj["id"], resp.status, resp.body)
        return resp

    def view_closed(
        self,
        user_id: str,
        view: dict[str, Any] | str,
        *,
        is_cleared: bool = False,
        values: dict[str, Any] | None = None,
        bad_signature: bool = False,
        stale: bool = False,
    ) -> DriverResponse:
        """Close a modal (notify_on_close); `values`: what was typed, as in view_submission."""
        view_obj = self._view(view)
        if values is not None:
            view_obj["state"] = {"values": state_values(view_obj, values)}
        payload = self._base("view_closed", user_id)
        payload["view"] = view_obj
        payload["is_cleared"] = is_cleared
        resp = self._interactive(payload, bad_signature=bad_signature, stale=stale)
        if view_obj.get("id"):
            self.fake.apply_view_closed(view_obj["id"], is_cleared=is_cleared)
        return resp

    def block_suggestion(
        self,
        user_id: str,
        action_id: str,
        value: str,
        *,
        view: dict[str, Any] | str | None = None,
        block_id: str | None = None,
        bad_signature: bool = False,
        stale: bool = False,
    ) -> DriverResponse:
        """An external_select options load; the ack body is checked as Slack would."""
        payload = self._base("block_suggestion", user_id)
        if view is not None:
            view_obj = self._view(view)
            block_id, _ = find_element(view_obj.get("blocks") or [], action_id, block_id)
            payload["container"] = {"type": "view", "view_id": view_obj.get("id")}
            payload["view"] = view_obj
        payload["action_id"] = action_id
        payload["block_id"] = block_id or "fake_block"
        payload["value"] = value
        resp = self._interactive(payload, bad_signature=bad_signature, stale=stale)
        if not (bad_signature or stale):
            self.fake.check_options_ack(resp.status, resp.body)
        return resp

    def shortcut(
        self, callback_id: str, user_id: str, bad_signature: bool = False, stale: bool = False
    ) -> DriverResponse:
        """A global shortcut."""
        payload = self._base("shortcut", user_id)
        payload["callback_id"] = callback_id
        payload["action_ts"] = f"{time.time():.6f}"
        payload["trigger_id"] = self.fake.new_trigger_id(user_id=user_id)
        return self._interactive(payload, bad_signature=bad_signature, stale=stale)

    def message_shortcut(
        self,
        callback_id: str,
        user_id: str,
        channel_id: str,
        message_ts: str,
        bad_signature: bool = False,
        stale: bool = False,
    ) -> DriverResponse:
        """A message shortcut on a message the fake holds."""
        message = self.fake.message(channel_id, message_ts)
        if message is None:
            raise LookupError(f"the fake has no message {channel_id}/{message_ts}")
        payload = self._base("message_action", user_id)
        payload.update(
            {
                "callback_id": callback_id,
                "action_ts": f"{time.time():.6f}",
                "trigger_id": self.fake.new_trigger_id(user_id=user_id),
                "message_ts": message_ts,
                "message": message,
                "channel": {"id": channel_id, "name": "unknown"},
                "response_url": self.fake.new_response_url(
                    channel_id=channel_id, message_ts=message_ts, user_id=user_id
                ),
            }
        )
        return self._interactive(payload, bad_signature=bad_signature, stale=stale)
