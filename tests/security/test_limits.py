"""Hardening from the security review: request body cap (#11), Block Kit limits by UTF-8
bytes (#19), provider text escaped in notification text (#20), secrets out of repr() (#26),
a CPU/memory budget for templates (#14), Reconnect needs the email claim (#28) and Test
connection answers alike for every network failure (#25)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.accounts import check_settings
from bot.blocks.compose import failed_post
from bot.blocks.conversation import Person
from bot.blocks.email_modal import EmailView, email_modal
from bot.blocks.search import PageState, results_message, search_modal
from bot.compose.signature import check as signature_check
from bot.config import Settings
from bot.mail.richtext import plain_to_rich_text, rich_text_to_text
from bot.providers.errors import AuthError
from bot.providers.oauth import OAuthApp, TokenSource
from bot.providers.types import ImapSettings
from bot.store.models import Account, Outbox, Provider
from bot.sync.status import record_failure
from bot.templates import TOO_COSTLY, make_variables, render, render_rich, validate
from bot.web import MAX_BODY_BYTES, WAITRESS_OPTIONS
from tests.slackfake.validate import VIEW_MAX_BYTES, validate_message, view_size

# -- #11 ------------------------------------------------------------------------------


def test_a_huge_unsigned_body_is_refused_before_it_is_read(mailroom: Any) -> None:
    parts = urlsplit(mailroom.url)
    # Announced as 1 GB, nothing sent: answered at once from the Content-Length alone.
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("POST", parts.path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(10**9))
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()
    # Just over the cap, as Slack never sends: refused the same way.
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("POST", parts.path)
    conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert WAITRESS_OPTIONS["max_request_body_size"] == MAX_BODY_BYTES


def test_slack_requests_under_the_cap_still_work(mailroom: Any) -> None:
    event = {"type": "app_home_opened", "user": "UMEMBER", "tab": "home"}
    assert mailroom.driver.event(event).status == 200
    mailroom.fake.wait_for("views.publish", 1, timeout=10)


# -- #19 ------------------------------------------------------------------------------


@pytest.mark.parametrize("letter", ["ж", "😀", '"\\'])
def test_search_metadata_and_paging_fit_by_bytes(letter: str) -> None:
    query = letter * 800
    modal = search_modal(query=query)
    assert len(modal["private_metadata"].encode()) <= 3000
    assert json.loads(modal["private_metadata"])["q"].startswith(letter * 10)
    value = PageState("search", query, 1).to_value()
    assert len(value.encode()) <= 2000
    assert PageState.from_value(value) is not None
    message = results_message(
        title="Search", items=[], state=PageState("search", query, 1), has_next=True
    )
    error, problems = validate_message({"channel": "C1", **message})
    assert (error, problems) == (None, [])


@pytest.mark.parametrize(
    ("body", "cut"), [("<x>&" * 17_500, True), ("😀" * 70_000, True), ('"\\' * 35_000, False)]
)
def test_open_modal_fits_slacks_byte_limit(body: str, cut: bool) -> None:
    email = EmailView(
        conversation_id=1, message_id=1, subject="s", sender=Person("A", "a@x.test"), body=body
    )
    view = email_modal(email)
    assert view_size(view) <= VIEW_MAX_BYTES
    assert ("too long to show in full" in json.dumps(view)) is cut


# -- #20 ------------------------------------------------------------------------------

HOSTILE = "550 <!channel> urgent: re-enter your password at <https://evil.test/login|https://sso>"


def test_send_failure_notification_text_is_escaped() -> None:
    text, blocks = failed_post("U1", HOSTILE, 7)
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text
    assert "<!channel>" not in json.dumps(blocks)


def test_sync_alert_dm_text_is_escaped(session: Session) -> None:
    account = Account(provider=Provider.IMAP, email="a&b@x.test", channel_id="C1", config={})
    session.add(account)
    session.flush()
    record_failure(session, account, AuthError(HOSTILE), admins=["UADMIN"])
    session.flush()
    [dm] = session.scalars(select(Outbox).where(Outbox.kind == "slack.dm")).all()
    text = dm.payload["text"]
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text and "a&amp;b@x.test" in text


# -- #26 ------------------------------------------------------------------------------


def test_secrets_are_not_in_repr() -> None:
    settings = Settings(
        slack_bot_token="xoxb-REAL-BOT-TOKEN",
        slack_app_token="xapp-APP-TOKEN",
        slack_signing_secret="SIGNING-SECRET",
        secret_key="FERNET-KEY",
        database_url="postgresql://u:DB-PASSWORD@h/db",
        google_client_secret="G-SECRET",
        microsoft_client_secret="M-SECRET",
        oauth_overrides={"gmail": {"client_secret": "OVERRIDE-SECRET"}},
    )
    app = OAuthApp(provider="gmail", client_id="cid", client_secret="CLIENT-SECRET")
    tokens = TokenSource(app, {"access_token": "ya29.ACCESS", "refresh_token": "1//REFRESH"})
    shown = repr(settings) + repr(app) + repr(tokens) + repr(replace(settings, port=1))
    for secret in (
        "xoxb-REAL-BOT-TOKEN",
        "xapp-APP-TOKEN",
        "SIGNING-SECRET",
        "FERNET-KEY",
        "DB-PASSWORD",
        "G-SECRET",
        "M-SECRET",
        "OVERRIDE-SECRET",
        "CLIENT-SECRET",
        "ya29.ACCESS",
        "1//REFRESH",
    ):
        assert secret not in shown, secret
    assert "cid" in shown  # what is not secret still shows


# -- #14 ------------------------------------------------------------------------------

COSTLY = {
    "format_width": "{{ '{:>400000000}'.format('x') }}",
    "percent_width": "{{ '%400000000s' % 'x' }}",
    "center": "{{ 'x'.center(500000000) }}",
    "indent_filter": "{{ ('x\n' * 5000) | indent(200000) }}",
    "replace_amplify": "{% set s = 'x' * 20000 %}{{ s.replace('x', s) }}",
    "join_amplify": "{% set s = 'x' * 20000 %}{% set l = [s] * 20000 %}{{ l | join(s) }}",
    "nested_string_loops": (
        "{% set s = 'x' * 20000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    ),
    "triple_string_loop": (
        "{% set s = 'x' * 2000 %}{% for a in s %}{% for b in s %}{% for c in s %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    ),
}


@pytest.mark.parametrize("name", sorted(COSTLY))
def test_costly_templates_are_stopped(name: str) -> None:
    result = render("Hello", COSTLY[name], make_variables(contact_name="Jane Doe"))
    assert not isinstance(result, tuple)
    assert TOO_COSTLY in str(result) or "too long" in str(result), result


def test_saving_a_costly_template_is_refused_and_a_good_one_renders() -> None:
    errors = validate("Loop", "Hi", COSTLY["nested_string_loops"])
    assert TOO_COSTLY in errors["body"]
    assert validate("Fine", "Hi {{ contact.first_name }}", "Thanks, {{ agent.name }}") == {}
    assert render(
        "Re: {{ thread.subject }}",
        "Hi {{ contact.first_name }}",
        make_variables(contact_name="Jane Doe", thread_subject="Order"),
    ) == ("Re: Order", "Hi Jane")


@pytest.mark.parametrize("name", ["nested_string_loops", "center"])
def test_costly_rich_templates_and_signatures_are_stopped(name: str) -> None:
    """Rich text templates and signatures render under the same child-process budget."""
    rich = plain_to_rich_text(COSTLY[name])
    result = render_rich("", rich, make_variables(contact_name="Jane Doe"))
    assert not isinstance(result, tuple)
    assert TOO_COSTLY in str(result) or "too long" in str(result), result
    assert TOO_COSTLY in (signature_check(rich) or "") or "too long" in (
        signature_check(rich) or ""
    )
    good = render_rich(
        "", plain_to_rich_text("Thanks, {{ agent.name }}"), make_variables(agent_name="Sam")
    )
    assert isinstance(good, tuple) and rich_text_to_text(good[1]).strip() == "Thanks, Sam"


# -- #25 ------------------------------------------------------------------------------


@contextmanager
def ports() -> Iterator[dict[str, int]]:
    """A closed port, a silent one (accepts, never speaks) and an HTTP-ish one."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    talker = socket.socket()
    talker.bind(("127.0.0.1", 0))
    talker.listen(8)
    stop = threading.Event()

    def talk() -> None:
        talker.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = talker.accept()
            except OSError:
                continue
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n")
            conn.close()

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()
    try:
        yield {
            "closed": closed_port,
            "silent": silent.getsockname()[1],
            "http": talker.getsockname()[1],
        }
    finally:
        stop.set()
        thread.join(2)
        silent.close()
        talker.close()


def test_test_connection_answers_alike_for_closed_silent_and_non_mail_ports() -> None:
    with ports() as p:
        answers = {}
        for kind, port in p.items():
            imap = ImapSettings(
                host="127.0.0.1", port=port, security="plain", username="u", timeout=0.5
            )
            result = check_settings(imap, None, imap_password="pw", generic_network_errors=True)
            assert not result.ok
            answers[kind] = result.message().replace(str(port), "PORT")
        assert len(set(answers.values())) == 1, answers
        text = answers["closed"]
        assert "refused" not in text and "did not answer" not in text
        # The CLI keeps the detail (its user has the server's shell anyway).
        imap = ImapSettings(
            host="127.0.0.1", port=p["closed"], security="plain", username="u", timeout=0.5
        )
        assert "refused" in check_settings(imap, None, imap_password="pw").message()


# -- #28 ------------------------------------------------------------------------------


def test_reconnect_without_an_email_claim_changes_nothing(mailroom: Any) -> None:
    from bot.oauth_connect import ConnectRequest, _reconnect, _Refused
    from bot.store.db import session_scope

    services = mailroom.services
    old = services.vault.encrypt({"refresh_token": "OLD", "client_secret": "s"})
    with session_scope(services.session_factory) as s:
        account = Account(
            provider=Provider.GRAPH,
            email="team@contoso.test",
            channel_id="CINBOX",
            config={},
            credentials=old,
        )
        s.add(account)
        s.flush()
        account_id = account.id
    request = ConnectRequest("UADMIN", "graph", "CINBOX", account_id=account_id, nonce="n1")
    tokens = {"access_token": "OTHER-MAILBOX", "refresh_token": "OTHER", "expires_in": 3600}
    with pytest.raises(_Refused, match="did not tell Mailroom which mailbox"):
        _reconnect(services, request, {"client_secret": "s"}, tokens)
    with session_scope(services.session_factory) as s:
        assert s.get_one(Account, account_id).credentials == old
