"""Local fakes of the Gmail API, Microsoft Graph and the Google / Microsoft token endpoints.

Each fake follows the public request/response shapes (including error bodies, paging and
limits) closely enough for the official client libraries to talk to it. They share
:class:`FakeHttpServer`: a threaded loopback HTTP(S) server that records every request.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"{}")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        h = {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(data).encode(), h)


@dataclass
class Fault:
    """An injected failure: the next ``times`` requests whose path contains ``match``."""

    match: str
    response: Response
    times: int = 1
    method: str | None = None


class FakeHttpServer:
    """Serve ``handle(Request) -> Response`` on 127.0.0.1; optional TLS."""

    def __init__(
        self, handle: Callable[[Request], Response], tls: ssl.SSLContext | None = None
    ) -> None:
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                req = Request(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with outer._lock:
                    outer.requests.append(req)
                    resp = outer._fault(req)
                if resp is None:
                    try:
                        resp = handle(req)
                    except Exception as exc:  # a fake bug shows as a 500 with the reason
                        resp = Response.json({"error": {"code": 500, "message": repr(exc)}}, 500)
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.body)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _fault(self, req: Request) -> Response | None:
        for fault in self.faults:
            if fault.times > 0 and fault.match in req.path and fault.method in (None, req.method):
                fault.times -= 1
                return fault.response
        return None

    def inject(
        self, match: str, response: Response, *, times: int = 1, method: str | None = None
    ) -> Fault:
        fault = Fault(match, response, times, method)
        with self._lock:
            self.faults.append(fault)
        return fault

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
