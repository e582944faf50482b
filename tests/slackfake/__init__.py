"""Offline Slack for tests: a fake Web API (FakeSlack), a Block Kit validator,
and a driver that sends signed Slack requests into the app over HTTP."""

from .driver import DriverResponse, SlackDriver, sign
from .serve import bolt_wsgi, serve_wsgi
from .server import BOT_TOKEN, AckProblem, Call, FakeSlack
from .validate import (
    validate_message,
    validate_message_blocks,
    validate_options_response,
    validate_view,
)
from .workspace import ResponsePost, SlackError

__all__ = [
    "BOT_TOKEN",
    "AckProblem",
    "Call",
    "DriverResponse",
    "FakeSlack",
    "ResponsePost",
    "SlackDriver",
    "SlackError",
    "bolt_wsgi",
    "serve_wsgi",
    "sign",
    "validate_message",
    "validate_message_blocks",
    "validate_options_response",
    "validate_view",
]
