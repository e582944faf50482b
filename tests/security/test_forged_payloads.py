"""Forged Slack payloads change nothing (security review #8, #9, #10): a compose form whose
private_metadata names another mailbox's mail sends nothing, the template picker reads
nothing of it, and an attachment URL in the form gets the bot token only on Slack's file
origin."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.blocks import compose as cb
from bot.blocks import ids
from bot.compose.files import DownloadError, download
from bot.compose.form import ComposeMeta
from bot.store.db import session_scope
from bot.store.models import Account, Outbox
from bot.store.templates import create_template
from tests.commands.conftest import two_accounts
from tests.compose import seed


def _seed(mailroom: Any) -> dict[str, int]:
    """support@ (CINBOX: UMEMBER is in it) and secret@ (CSECRET: UMEMBER is not), one
    conversation each; secret@'s holds confidential mail."""
    inbox, secret = two_accounts(mailroom)
    with session_scope(mailroom.services.session_factory) as s:
        ours = seed.ingest(s, s.get_one(Account, inbox), seed.email(message_id="ours@cust.test"))
        theirs = seed.ingest(
            s,
            s.get_one(Account, secret),
            seed.email(
                message_id="settlement@lawfirm.test",
                sender="Counsel <counsel@lawfirm.test>",
                to="secret@example.com",
                subject="Settlement terms (confidential)",
                body="The settlement figure is $4.2M. Do not forward.",
            ),
        )
        return {
            "inbox": inbox,
            "secret": secret,
            "our_conv": ours.conversation.id,
            "our_msg": ours.message.id,
            "their_conv": theirs.conversation.id,
            "their_msg": theirs.message.id,
        }


def _forward_view(mailroom: Any, conv_id: int) -> dict[str, Any]:
    mailroom.driver.block_action("UMEMBER", ids.CONV_FORWARD, str(conv_id), channel_id="CINBOX")
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UMEMBER"), timeout=10)
    view: dict[str, Any] = mailroom.fake.modal_stack("UMEMBER")[-1]
    assert view.get("callback_id") == ids.VIEW_COMPOSE, view
    return view


def _forge(mailroom: Any, view_id: str, **changes: Any) -> None:
    """What an altered request would carry: the stored view's metadata, changed."""
    with mailroom.fake.ws.lock:
        stored = mailroom.fake.ws.views[view_id]
        meta = json.loads(stored["private_metadata"])
        meta.update(changes)
        stored["private_metadata"] = json.dumps(meta)


def _send_rows(mailroom: Any) -> int:
    with session_scope(mailroom.services.session_factory) as s:
        return s.execute(
            select(func.count(Outbox.id)).where(Outbox.kind == "mail.send")
        ).scalar_one()


@pytest.mark.parametrize(
    "forged",
    [
        {"c": "their_conv", "m": "their_msg"},  # the whole conversation and message
        {"m": "their_msg"},  # our conversation, their message
        {"c": "their_conv"},  # their conversation
    ],
)
def test_forged_compose_metadata_sends_nothing(mailroom: Any, forged: dict[str, str]) -> None:
    ids_ = _seed(mailroom)
    view = _forward_view(mailroom, ids_["our_conv"])
    _forge(mailroom, view["id"], **{k: ids_[v] for k, v in forged.items()})
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {
            cb.TO_BLOCK: {cb.VALUE: "mallory@evil.test"},
            "subject_0": {cb.VALUE: "fyi"},
            "body_0": {cb.VALUE: "see below"},
        },
    )
    mailroom.settle()
    assert resp.status == 200
    assert resp.json()["response_action"] == "update"
    assert "another mailbox" in json.dumps(resp.json()["view"])
    assert _send_rows(mailroom) == 0


def test_unforged_forward_still_queues(mailroom: Any) -> None:
    ids_ = _seed(mailroom)
    view = _forward_view(mailroom, ids_["our_conv"])
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view["id"],
        {cb.TO_BLOCK: {cb.VALUE: "colleague@ours.test"}, "body_0": {cb.VALUE: "fyi"}},
    )
    mailroom.settle()
    assert resp.status == 200 and resp.body == ""
    assert _send_rows(mailroom) == 1


def test_template_picker_refuses_forged_metadata(mailroom: Any) -> None:
    ids_ = _seed(mailroom)
    with session_scope(mailroom.services.session_factory) as s:
        tpl = create_template(
            s,
            name="Leak",
            subject="{{ thread.subject }}",
            body="{{ contact.name }}",
            user_id="UADMIN",
        )
        tpl_id = tpl.id
    view = _forward_view(mailroom, ids_["our_conv"])
    _forge(mailroom, view["id"], c=ids_["their_conv"], m=ids_["their_msg"])
    before = len(mailroom.fake.calls_to("views.update"))
    mailroom.driver.block_action("UMEMBER", ids.COMPOSE_TEMPLATE_PICK, str(tpl_id), view=view["id"])
    [*_, update] = mailroom.fake.wait_for("views.update", before + 1, timeout=10)
    shown = json.dumps(update.args)
    assert "Settlement" not in shown and "Counsel" not in shown
    assert "whose channel you are in" in shown


def test_template_picker_fills_in_for_own_mail(mailroom: Any) -> None:
    ids_ = _seed(mailroom)
    with session_scope(mailroom.services.session_factory) as s:
        tpl = create_template(
            s, name="Hi", subject="{{ thread.subject }}", body="Hi {{ contact.name }}", user_id="U1"
        )
        tpl_id = tpl.id
    view = _forward_view(mailroom, ids_["our_conv"])
    before = len(mailroom.fake.calls_to("views.update"))
    mailroom.driver.block_action("UMEMBER", ids.COMPOSE_TEMPLATE_PICK, str(tpl_id), view=view["id"])
    [*_, update] = mailroom.fake.wait_for("views.update", before + 1, timeout=10)
    assert "Hi Jane Doe" in json.dumps(update.args)


def test_compose_meta_has_no_room_for_urls() -> None:
    """The attachment URLs come from Slack's file_input state, not from our metadata."""
    meta = ComposeMeta(mode="new", message_id="x@y")
    assert set(meta.dump()) == {"mode", "mid", "r"}


# -- #10: the bot token goes to Slack's file origin only ------------------------------


@contextmanager
def http_server() -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """A loopback server recording (host header, path, Authorization) of each request.
    /file answers bytes; /redirect-away sends to the same port under another host name."""
    seen: list[tuple[str, str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_GET(self) -> None:
            seen.append(
                (self.headers.get("Host", ""), self.path, self.headers.get("Authorization", ""))
            )
            address = self.server.server_address
            assert isinstance(address, tuple)  # (host, port): an AF_INET server
            port = address[1]
            if self.path == "/redirect-away":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{port}/collect")
                self.end_headers()
                return
            if self.path == "/redirect-here":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{port}/file")
                self.end_headers()
                return
            body = b"file bytes"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_download_sends_the_token_to_slacks_file_origin_only() -> None:
    with http_server() as (origin, seen):
        # Production: only https://files.slack.com; this loopback origin is refused unread.
        with pytest.raises(DownloadError, match="not a Slack file link"):
            download(f"{origin}/file", "xoxb-SECRET", name="a.txt", mimetype="text/plain")
        assert seen == []
        with pytest.raises(DownloadError):
            download(
                "http://files.slack.com/x",  # plain http on Slack's host: refused too
                "xoxb-SECRET",
                name="a.txt",
                mimetype="text/plain",
            )
        # Configured (tests, GovSlack): this origin works, and a redirect within it too.
        got = download(
            f"{origin}/redirect-here",
            "xoxb-SECRET",
            name="a.txt",
            mimetype="text/plain",
            files_url=origin,
        )
        assert got.data == b"file bytes"
        # A redirect to another host is not followed: the token never reaches it.
        seen.clear()
        with pytest.raises(DownloadError):
            download(
                f"{origin}/redirect-away",
                "xoxb-SECRET",
                name="a.txt",
                mimetype="text/plain",
                files_url=origin,
            )
        assert [path for _h, path, _a in seen] == ["/redirect-away"]
        assert not any(h.startswith("localhost") for h, _p, _a in seen)


def test_another_host_on_the_same_port_is_another_origin() -> None:
    with http_server() as (origin, seen):
        other = origin.replace("127.0.0.1", "localhost")
        with pytest.raises(DownloadError):
            download(f"{other}/file", "xoxb-SECRET", name="a", mimetype="", files_url=origin)
        assert seen == []
