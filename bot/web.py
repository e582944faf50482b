"""HTTP: the Bolt app as a WSGI application, a health endpoint for load balancers, and the
OAuth callback (``/oauth/callback``) where Google and Microsoft send an admin back."""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text

from bot.oauth_connect import CALLBACK_PATH, complete, provider_error
from bot.services import Services
from bot.store.db import read_scope

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
SLACK_PATHS = ("/slack/events",)
MAX_QUERY = 16_384  # a callback's query is a code and a state: anything longer is not one

# The page shows the outcome only: no scripts, no outside resources, nothing cached, and no
# Referer carrying the code anywhere.
_PAGE_HEADERS = [
    ("Content-Type", "text/html; charset=utf-8"),
    ("Cache-Control", "no-store"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
]


def result_page(ok: bool, message: str) -> bytes:
    """A small HTML page; everything in it is escaped."""
    title = "Mailbox connected" if ok else "Mailbox not connected"
    after = (
        "You can close this window and go back to Slack."
        if ok
        else "You can close this window. Nothing was changed in Mailroom."
    )
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>Mailroom: {html.escape(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;"
        "padding:0 1em;line-height:1.5}h1{font-size:1.4em}</style></head><body>"
        f"<h1>{'&#9989;' if ok else '&#10060;'} {html.escape(title)}</h1>"
        f"<p>{html.escape(message)}</p><p>{html.escape(after)}</p></body></html>"
    )
    return body.encode()


def _oauth_callback(
    app: App, services: Services, environ: dict[str, Any], start_response: StartResponse
) -> Iterable[bytes]:
    if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Allow", "GET"), *_PAGE_HEADERS])
        return [result_page(False, "Open this address from the sign-in page only.")]
    query_string = str(environ.get("QUERY_STRING") or "")
    query = {
        k: v[0] for k, v in parse_qs(query_string[:MAX_QUERY], keep_blank_values=True).items() if v
    }
    state = query.get("state", "")
    if query.get("error"):
        ok, message = (
            False,
            provider_error(
                services, query["error"][:100], query.get("error_description", "")[:300], state
            ),
        )
    elif not query.get("code") or not state:
        ok, message = (
            False,
            (
                "This address is where Google or Microsoft send you back after signing in; it "
                'was opened without a sign-in. Start from "Add email account" in Mailroom\'s '
                "App Home in Slack."
            ),
        )
    else:
        try:
            ok, message = complete(services, app.client, query["code"], state)
        except Exception:  # the admin gets a page either way; details go to the log
            log.exception("OAuth callback failed")
            ok, message = (
                False,
                (
                    "Mailroom could not finish connecting the mailbox because of an internal "
                    "error (see its log). Start again from the App Home in a moment."
                ),
            )
    page = result_page(ok, message)
    status = "200 OK" if ok else "400 Bad Request"
    start_response(status, [*_PAGE_HEADERS, ("Content-Length", str(len(page)))])
    return [page]


MAX_PUSH_BODY = 1_048_576  # Pub/Sub messages are tiny; Graph batches stay well under this


def _push(
    services: Services,
    environ: dict[str, Any],
    start_response: StartResponse,
    on_push: Callable[[int], None] | None,
) -> Iterable[bytes]:
    """POST /push/gmail and /push/graph[/lifecycle] (bot/sync/push.py does the checking)."""
    from bot.sync import push

    if environ.get("REQUEST_METHOD") != "POST":
        start_response("405 Method Not Allowed", [("Allow", "POST"), ("Content-Length", "0")])
        return [b""]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_PUSH_BODY:
        start_response("413 Payload Too Large", [("Content-Length", "0")])
        return [b""]
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    path = environ.get("PATH_INFO", "")
    if path == push.GMAIL_PATH:
        reply = push.receive_gmail(services, environ.get("HTTP_AUTHORIZATION"), body)
    else:
        query = parse_qs(str(environ.get("QUERY_STRING") or "")[:MAX_QUERY])
        token = query["validationToken"][0] if query.get("validationToken") else None
        reply = push.receive_graph(services, token, body)
    for account_id in reply.accounts:
        try:
            if on_push is not None:
                on_push(account_id)  # the in-process scheduler: run it now
        except Exception:  # the store mark stands: the next claim runs it
            log.exception("running account %s after a push failed", account_id)
    phrase = {200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request"}
    phrase |= {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    start_response(
        f"{reply.status} {phrase.get(reply.status, 'Error')}",
        [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"),
        ],
    )
    return [reply.body]


PUSH_PATHS = ("/push/gmail", "/push/graph", "/push/graph/lifecycle")
# The largest request Mailroom reads. Slack's biggest payload is a view submission (a modal is
# at most ~250 kB of JSON, URL-encoded); without a cap a client with no signature made the
# server read and decode any body (1 GB by default) before the signature check refused it.
MAX_BODY_BYTES = 2_000_000

# What `mailroom serve` hands waitress: it refuses a longer body itself (also a chunked one,
# which has no Content-Length).
WAITRESS_OPTIONS: dict[str, Any] = {"max_request_body_size": MAX_BODY_BYTES}


def _too_large(environ: dict[str, Any]) -> bool:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return True
    return length > MAX_BODY_BYTES


def make_wsgi_app(
    app: App,
    services: Services,
    *,
    slack_events: bool = True,
    on_push: Callable[[int], None] | None = None,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """``slack_events=False`` serves only the callback, push endpoints and the health check: in
    Socket Mode requests are not signature-checked, so /slack/events must not be reachable over
    HTTP. ``on_push``: run an account now (an in-process worker's scheduler) after a push; the
    store's mark makes some worker run it anyway."""
    slack = SlackRequestHandler(app)

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if _too_large(environ):  # refused before a byte of the body is read
            start_response("413 Payload Too Large", [("Content-Type", "text/plain")])
            return [b"request body too large"]
        if slack_events and path in SLACK_PATHS:
            return slack(environ, start_response)
        if path == CALLBACK_PATH:
            return _oauth_callback(app, services, environ, start_response)
        if path in PUSH_PATHS:
            return _push(services, environ, start_response, on_push)
        if path in ("/healthz", "/health"):
            status = "200 OK"
            body: dict[str, object] = {"ok": True}
            try:
                with read_scope(services.session_factory) as session:
                    session.execute(text("SELECT 1"))
            except Exception as exc:  # the health check reports, never raises
                status, body = "503 Service Unavailable", {"ok": False, "error": type(exc).__name__}
            data = json.dumps(body).encode()
            start_response(
                status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
            )
            return [data]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]

    return wsgi
