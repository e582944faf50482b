"""Serve a WSGI app (a Bolt app behind SlackRequestHandler) on loopback in a thread."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


@contextmanager
def serve_wsgi(app: WSGIApp, path: str = "/slack/events") -> Iterator[str]:
    """Yield the URL of ``path`` on a threaded loopback server running ``app``."""
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wsgi-app", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def bolt_wsgi(bolt_app: Any, path: str = "/slack/events") -> WSGIApp:
    """A WSGI callable for a slack_bolt.App (slack_bolt's own WSGI adapter)."""
    from slack_bolt.adapter.wsgi import SlackRequestHandler

    handler: WSGIApp = SlackRequestHandler(bolt_app, path=path)
    return handler
