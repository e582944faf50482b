"""Offline Slack for tests: a fake Web API (FakeSlack), a Block Kit validator,
and a driver that sends signed Slack requests into the app over HTTP.

Typical use (fixtures ``fake_slack`` and ``slack_signing_secret`` come from
``tests.slackfake.fixtures``)::

    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    app = App(signing_secret=slack_signing_secret, client=client)
    with serve_wsgi(bolt_wsgi(app)) as url:
        driver = SlackDriver(url, slack_signing_secret, fake_slack)
        assert driver.command("/inbox", text="invoices", user_id="UMEMBER").status == 200
        fake_slack.wait_for("views.open")          # background work
        assert fake_slack.modal_stack("UMEMBER")   # assert on state, not just calls

Payloads Slack would reject fail with Slack's error name and
``response_metadata.messages``; what the app acks to view submissions and
options loads is checked too and lands in ``fake_slack.ack_problems``.
"""

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
