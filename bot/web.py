"""HTTP mode: the Bolt app as a WSGI application, with a health endpoint for load balancers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text

from bot.services import Services

StartResponse = Callable[..., Any]
SLACK_PATHS = ("/slack/events",)


def make_wsgi_app(
    app: App, services: Services
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    slack = SlackRequestHandler(app)

    def wsgi(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in SLACK_PATHS:
            return slack(environ, start_response)
        if path in ("/healthz", "/health"):
            status = "200 OK"
            body: dict[str, object] = {"ok": True}
            try:
                with services.session_factory() as session:
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
