"""FakeSlack: a stateful, validating fake of Slack's Web API over real loopback HTTP.

Point ``WebClient(base_url=fake.api_url)`` at it so slack_sdk's own serialisation,
retry and error paths run. Every call is recorded; faults can be injected.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from .validate import validate_options_response, validate_view_arg
from .workspace import (
    APP_ID,
    TEAM_ID,
    Channel,
    ResponsePost,
    SlackError,
    Workspace,
    api_methods,
)

BOT_TOKEN = "xoxb-fake-bot-token"

# Arguments that carry JSON even in form posts; Call.arg() decodes them.
_JSON_ARGS = {"blocks", "attachments", "view", "files", "metadata"}


@dataclass
class Call:
    """One Web API request as the fake received it, and what it answered."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    status: int = 200
    response: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def error(self) -> str | None:
        return None if self.response is None else self.response.get("error")

    def arg(self, name: str) -> Any:
        """An argument, JSON-decoded when it is one of Slack's JSON-valued ones."""
        value = self.args.get(name)
        if name in _JSON_ARGS and isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value


@dataclass
class Fault:
    method: str  # "*" matches every method
    status: int
    error: str | None
    retry_after: int | None
    json_body: bool
    remaining: int
    skip: int = 0  # calls that pass before the fault starts


@dataclass
class AckProblem:
    """A problem Slack would have shown the user for what the app acked."""

    kind: str
    detail: list[str] = field(default_factory=list)


class FakeSlack:
    def __init__(self, *, bot_user_id: str = "UBOT", bot_token: str = BOT_TOKEN) -> None:
        self.bot_token = bot_token
        self.tokens: set[str] = {bot_token}
        self.revoked: set[str] = set()
        self.ws = Workspace(lambda: self.base_url, bot_user_id=bot_user_id)
        self._methods = api_methods(self.ws)
        self.calls: list[Call] = []
        self.ack_problems: list[AckProblem] = []
        self._faults: list[Fault] = []
        self._cond = threading.Condition(self.ws.lock)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            name="fake-slack",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSlack is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}api/"

    # -- seeding ------------------------------------------------------------------

    @property
    def bot_user_id(self) -> str:
        return self.ws.bot_user_id

    @property
    def team_id(self) -> str:
        return TEAM_ID

    @property
    def app_id(self) -> str:
        return APP_ID

    def add_user(
        self, user_id: str, name: str, *, is_admin: bool = False, **kw: Any
    ) -> dict[str, Any]:
        return self.ws.add_user(user_id, name, is_admin=is_admin, **kw)

    def add_channel(
        self,
        channel_id: str,
        name: str,
        members: list[str] | None = None,
        *,
        is_private: bool = False,
    ) -> Channel:
        return self.ws.add_channel(channel_id, name, members, is_private=is_private)

    def add_message(
        self,
        channel_id: str,
        user_id: str,
        text: str,
        *,
        thread_ts: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Seed a message a person posted; returns it (with its ts)."""
        return self.ws.add_message(channel_id, user_id, text, thread_ts=thread_ts, **extra)

    def add_token(self, token: str) -> None:
        """Accept another token (e.g. a second workspace's bot or a user token)."""
        with self.ws.lock:
            self.tokens.add(token)

    def revoke_token(self, token: str) -> None:
        """Later calls with this token answer ``token_revoked``."""
        with self.ws.lock:
            self.revoked.add(token)

    def add_file(
        self,
        name: str,
        content: bytes,
        mimetype: str = "application/octet-stream",
        *,
        user: str | None = None,
    ) -> dict[str, Any]:
        """A file a person uploaded (e.g. in a modal's file_input); downloadable with the bot token."""
        return self.ws.add_file(name, content, mimetype, user or "UMEMBER")

    def new_trigger_id(
        self, *, user_id: str | None = None, view_id: str | None = None, ttl: float | None = None
    ) -> str:
        return self.ws.new_trigger_id(user_id=user_id, view_id=view_id, ttl=ttl)

    def expire_trigger_id(self, trigger_id: str) -> None:
        """Make a trigger older than its 3 s life, without sleeping in tests."""
        self.ws.expire_trigger_id(trigger_id)

    def new_response_url(
        self,
        *,
        channel_id: str | None = None,
        message_ts: str | None = None,
        user_id: str | None = None,
    ) -> str:
        return self.ws.new_response_url(
            channel_id=channel_id, message_ts=message_ts, user_id=user_id
        )

    # -- fault injection ------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        *,
        status: int | None = None,
        error: str | None = None,
        retry_after: int | None = 1,
        times: int = 1,
        json_body: bool = False,
        after: int = 0,
    ) -> None:
        """Fail the next ``times`` calls to ``method`` ("*" for any), once ``after`` calls
        have passed.

        - default: HTTP 429, ``Retry-After: retry_after``, ``{"ok":false,"error":"ratelimited"}``;
        - ``status=500/503``: a 5xx with an HTML body (``json_body=True``: ``fatal_error`` JSON);
        - ``error="invalid_auth"`` (any name): HTTP 200 with ``{"ok": false, "error": ...}``.
        """
        if status is None:
            status = 200 if error is not None else 429
        with self.ws.lock:
            self._faults.append(
                Fault(method, status, error, retry_after, json_body, times, skip=after)
            )

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in (method, "*"):
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- inspection -------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self.ws.lock:
            return [c for c in self.calls if c.method == method]

    def reset_calls(self) -> None:
        with self.ws.lock:
            self.calls.clear()

    def wait_for(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until ``method`` was called at least ``count`` times; return those calls."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [c for c in self.calls if c.method == method]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [c.method for c in self.calls]
                    raise AssertionError(
                        f"expected {count} call(s) to {method} within {timeout}s, "
                        f"got {len(found)}; calls so far: {seen}"
                    )
                self._cond.wait(left)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until predicate() is true; re-checked after every call the fake serves."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"condition not met within {timeout}s")
                self._cond.wait(min(left, 0.1))

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """All messages (parents and replies) in a channel, oldest first."""
        with self.ws.lock:
            return copy.deepcopy(list(self.ws.messages_by_channel.get(channel, {}).values()))

    def top_level(self, channel: str) -> list[dict[str, Any]]:
        """Messages that are not replies, oldest first."""
        return [m for m in self.messages(channel) if m.get("thread_ts") in (None, m["ts"])]

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Replies in the thread of ``ts`` (parent excluded), oldest first."""
        with self.ws.lock:
            return copy.deepcopy(self.ws.thread(channel, ts))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self.ws.lock:
            msg = self.ws.messages_by_channel.get(channel, {}).get(ts)
            return copy.deepcopy(msg)

    @property
    def ephemerals(self) -> list[dict[str, Any]]:
        with self.ws.lock:
            return copy.deepcopy(self.ws.ephemerals)

    @property
    def responses(self) -> list[ResponsePost]:
        with self.ws.lock:
            return list(self.ws.responses)

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        with self.ws.lock:
            return {k: self.ws.public_view(v) for k, v in self.ws.views.items()}

    def view(self, view_id: str) -> dict[str, Any] | None:
        with self.ws.lock:
            v = self.ws.views.get(view_id)
            return None if v is None else self.ws.public_view(v)

    def home(self, user_id: str) -> dict[str, Any] | None:
        with self.ws.lock:
            vid = self.ws.homes.get(user_id)
            return None if vid is None else self.ws.public_view(self.ws.views[vid])

    def modal_stack(self, user_id: str) -> list[dict[str, Any]]:
        """The user's open modals, bottom first; empty when all are closed."""
        with self.ws.lock:
            return self.ws.open_stack(user_id)

    def file(self, file_id: str) -> dict[str, Any] | None:
        with self.ws.lock:
            f = self.ws.files.get(file_id)
            return None if f is None else self.ws.file_to_api(f)

    def file_content(self, file_id: str) -> bytes | None:
        with self.ws.lock:
            f = self.ws.files.get(file_id)
            return None if f is None else f.content

    # -- acks of interactive payloads (fed by the driver) ------------------------------

    def apply_view_ack(self, view_id: str, status: int, body: str) -> None:
        """Do to the modal stack what Slack does with a view_submission ack.

        Empty 200 closes the submitted view; ``clear`` closes all; ``update`` and
        ``push`` are validated like views.update / views.push; ``errors`` must
        name input blocks of the view. Problems go to ``ack_problems``.
        """
        with self._cond:
            if status != 200:
                self.ack_problems.append(AckProblem("http_status", [f"ack status {status}"]))
                return
            if not body.strip():
                self.ws.close_top(view_id)
                return
            try:
                ack = json.loads(body)
            except ValueError:
                self.ack_problems.append(AckProblem("not_json", [body[:200]]))
                return
            action = ack.get("response_action") if isinstance(ack, dict) else None
            if action == "clear":
                self.ws.close_top(view_id, clear=True)
            elif action in ("update", "push"):
                self._apply_view_ack_view(view_id, action, ack.get("view"))
            elif action == "errors":
                self._check_ack_errors(view_id, ack.get("errors"))
            else:
                self.ack_problems.append(AckProblem("unknown_response_action", [str(action)]))
            self._cond.notify_all()

    def _apply_view_ack_view(self, view_id: str, action: str, spec: Any) -> None:
        error, problems = validate_view_arg(spec)
        if error:
            self.ack_problems.append(AckProblem(error, problems))
            return
        view = self.ws.views.get(view_id)
        if view is None:
            self.ack_problems.append(AckProblem("not_found", [view_id]))
            return
        if action == "update":
            self.ws.replace_view(view, spec)
            return
        stack = self.ws.stacks.get(view["root_view_id"], [])
        try:
            self.ws.push_view(stack, spec)
        except SlackError as exc:
            self.ack_problems.append(AckProblem(exc.error))

    def _check_ack_errors(self, view_id: str, errors: Any) -> None:
        view = self.ws.views.get(view_id)
        inputs = {
            b.get("block_id") for b in (view or {}).get("blocks", []) if b.get("type") == "input"
        }
        if not isinstance(errors, dict) or not errors:
            self.ack_problems.append(
                AckProblem("invalid_errors", ["errors must be a non-empty object"])
            )
            return
        bad = [k for k in errors if k not in inputs]
        if bad:
            self.ack_problems.append(
                AckProblem("invalid_errors", [f"not input block_ids of the view: {bad}"])
            )

    def apply_view_closed(self, view_id: str, *, is_cleared: bool) -> None:
        with self._cond:
            self.ws.close_top(view_id, clear=is_cleared)

    def check_options_ack(self, status: int, body: str) -> None:
        with self._cond:
            try:
                parsed = json.loads(body) if body.strip() else None
            except ValueError:
                parsed = None
            problems = validate_options_response(parsed) if status == 200 else [f"status {status}"]
            if problems:
                self.ack_problems.append(AckProblem("invalid_options", problems))

    # -- request handling (called from server threads) --------------------------------

    def _auth_error(
        self, headers: dict[str, str], args: dict[str, Any], is_json: bool
    ) -> str | None:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token and not is_json:  # Slack also takes a token argument in form posts
            token = str(args.get("token") or "")
        if not token:
            return "not_authed"
        if token in self.revoked:
            return "token_revoked"
        if token not in self.tokens:
            return "invalid_auth"
        return None

    def handle_api(
        self, method: str, args: dict[str, Any], headers: dict[str, str], is_json: bool
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one Web API call: (HTTP status, headers, body)."""
        with self._cond:
            fault = self._take_fault(method)
            if fault is not None:
                return _fault_response(fault)
            try:
                error = self._auth_error(headers, args, is_json)
                if error is not None:
                    raise SlackError(error)
                impl = self._methods.get(method)
                if impl is None:
                    raise SlackError("unknown_method")
                result = {"ok": True, **impl(args)}
            except SlackError as exc:
                result = exc.body()
            return 200, {"Content-Type": "application/json; charset=utf-8"}, _dump(result)

    def record(self, call: Call) -> None:
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()


def _fault_response(fault: Fault) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if fault.status == 429:
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        return 429, headers, _dump({"ok": False, "error": "ratelimited"})
    if fault.status >= 500:
        if fault.json_body:
            return fault.status, headers, _dump({"ok": False, "error": "fatal_error"})
        html = b"<html><body><h1>Service Unavailable</h1></body></html>"
        return fault.status, {"Content-Type": "text/html"}, html
    return fault.status, headers, _dump({"ok": False, "error": fault.error or "fatal_error"})


def _dump(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode("utf-8")


def _parse_body(content_type: str, raw: bytes) -> tuple[dict[str, Any], bool]:
    """Decode a Web API request body; returns (args, was_json)."""
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/json":
        parsed = json.loads(raw or b"{}")
        return (parsed if isinstance(parsed, dict) else {}), True
    if ctype == "multipart/form-data":
        msg = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw
        )
        args: dict[str, Any] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if name and isinstance(payload, bytes):
                args[str(name)] = payload if part.get_filename() else payload.decode("utf-8")
        return args, False
    form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
    return {k: v[-1] for k, v in form.items()}, False


def _make_handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeSlack/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # quiet; calls are recorded
            return None

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _raw(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            raw = self._raw()
            if url.path.startswith("/api/"):
                self._api(url.path[5:], url.query, raw)
            elif url.path.startswith("/upload/"):
                ok = fake.ws.receive_upload(url.path[8:], raw, self.headers.get("Content-Type"))
                self._send(
                    200 if ok else 404,
                    {"Content-Type": "text/plain"},
                    f"OK - {len(raw)}".encode() if ok else b"not found",
                )
            elif url.path.startswith("/response_url/"):
                status, body = fake.ws.receive_response(url.path[14:], raw)
                with fake._cond:
                    fake._cond.notify_all()
                self._send(status, {"Content-Type": "application/json"}, _dump(body))
            else:
                self._send(404, {"Content-Type": "text/plain"}, b"not found")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path.startswith("/api/"):
                self._api(url.path[5:], url.query, b"")
            elif url.path.startswith("/files-pri/"):
                self._download(url.path)
            else:
                self._send(404, {"Content-Type": "text/plain"}, b"not found")

        def _download(self, path: str) -> None:
            # /files-pri/{team}-{file_id}/[download/]name
            parts = unquote(path).split("/")
            file_id = parts[2].split("-", 1)[-1] if len(parts) > 2 else ""
            headers = {k.lower(): v for k, v in self.headers.items()}
            if fake._auth_error(headers, {}, True) is not None:
                # Slack answers an unauthenticated download with its HTML login page.
                page = b"<!DOCTYPE html><html><body>Sign in to Slack</body></html>"
                self._send(200, {"Content-Type": "text/html; charset=utf-8"}, page)
                return
            f = fake.ws.file_for_download(file_id)
            if f is None or f.content is None:
                self._send(404, {"Content-Type": "text/plain"}, b"file not found")
                return
            self._send(200, {"Content-Type": f.mimetype}, f.content)

        def _api(self, method: str, query: str, raw: bytes) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                args, is_json = _parse_body(self.headers.get("Content-Type") or "", raw)
            except (ValueError, UnicodeDecodeError):
                call = Call(method, {}, headers, response={"ok": False, "error": "invalid_json"})
                fake.record(call)
                self._send(200, {"Content-Type": "application/json"}, _dump(call.response or {}))
                return
            for k, v in parse_qs(query, keep_blank_values=True).items():
                args.setdefault(k, v[-1])
            status, out_headers, body = fake.handle_api(method, args, headers, is_json)
            # Recorded after answering state, before replying, so wait_for sees effects.
            fake.record(_last_call(method, args, headers, status, body))
            self._send(status, out_headers, body)

    return Handler


def _last_call(
    method: str, args: dict[str, Any], headers: dict[str, str], status: int, body: bytes
) -> Call:
    try:
        response = json.loads(body)
    except ValueError:
        response = None
    return Call(method, args, headers, status=status, response=response)
