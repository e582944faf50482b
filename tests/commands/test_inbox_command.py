"""/inbox through signed requests and the fake Slack: every answer ephemeral, only the mail
of accounts whose channel the caller is in."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from bot.blocks import ids
from bot.blocks.search import PageState
from bot.store.db import session_scope
from bot.store.models import Client, ClientAddress, ConversationLink
from tests.commands.conftest import ingest, last_response, set_conv, two_accounts


def subjects(body: dict[str, Any]) -> list[str]:
    out = []
    for b in body.get("blocks") or []:
        if b.get("type") == "section" and b.get("accessory", {}).get("action_id") == ids.CONV_OPEN:
            out.append(b["text"]["text"].split("*")[1])
    return out


def test_list_each_filter_with_counts_and_only_visible_mail(mailroom: Any) -> None:
    inbox, secret = two_accounts(mailroom)
    a = ingest(mailroom, inbox, "Unread question")
    b = ingest(mailroom, inbox, "Old archived thread")
    c = ingest(mailroom, inbox, "Linked to Acme")
    ingest(mailroom, secret, "Secret board memo")
    set_conv(mailroom, b, archived=True, unread_count=0)
    set_conv(mailroom, c, unread_count=0)
    with session_scope(mailroom.services.session_factory) as s:
        acme = Client(name="Acme")
        s.add(acme)
        s.flush()
        s.add(ConversationLink(conversation_id=c, client_id=acme.id, method="manual"))

    expected = {
        "all": {"Unread question", "Old archived thread", "Linked to Acme"},
        "unread": {"Unread question"},
        "archived": {"Old archived thread"},
        "linked": {"Linked to Acme"},
        "unlinked": {"Unread question", "Old archived thread"},
    }
    for n, (name, want) in enumerate(expected.items(), start=1):
        resp = mailroom.driver.command(text=f"list {name}", user_id="UMEMBER")
        assert resp.status == 200
        body = last_response(mailroom, n)
        assert body["response_type"] == "ephemeral"
        assert set(subjects(body)) == want, name
        counts = body["blocks"][1]["elements"][0]["text"]
        assert "All: *3*" in counts and "Unread: *1*" in counts and "Linked: *1*" in counts
    assert a  # the unread one is listed first-class above
    assert not any("Secret" in str(r.body) for r in mailroom.fake.responses)
    assert mailroom.fake.ack_problems == []


def test_search_finds_only_mail_the_caller_may_see(mailroom: Any) -> None:
    inbox, secret = two_accounts(mailroom)
    ingest(mailroom, inbox, "Invoice 1001 overdue")
    ingest(mailroom, secret, "Invoice for the secret project")
    mailroom.driver.command(text="search invoice", user_id="UMEMBER")
    body = last_response(mailroom, 1)
    assert subjects(body) == ["Invoice 1001 overdue"]
    # open value names the email; a thread link is absent until the parent is posted
    mailroom.driver.command(text="search invoice", user_id="UOUTSIDER")
    body = last_response(mailroom, 2)
    assert subjects(body) == []
    assert "Nothing you can see" in json.dumps(body)
    mailroom.driver.command(text="search invoice", user_id="UADMIN")
    assert len(subjects(last_response(mailroom, 3))) == 2  # admin is in both channels


def test_list_pages_with_next_and_previous(mailroom: Any) -> None:
    inbox, _ = two_accounts(mailroom)
    for i in range(12):
        ingest(mailroom, inbox, f"Question {i:02d}")
    mailroom.driver.command(text="list", user_id="UMEMBER")
    first = last_response(mailroom, 1)
    assert len(subjects(first)) == 10
    nav = first["blocks"][-1]["elements"]
    assert [e["action_id"] for e in nav] == [f"{ids.RESULTS_PAGE}:next"]
    mailroom.driver.block_action(
        "UMEMBER", f"{ids.RESULTS_PAGE}:next", nav[0]["value"], channel_id="CINBOX"
    )
    second = last_response(mailroom, 2)
    assert len(subjects(second)) == 2
    assert not set(subjects(second)) & set(subjects(first))
    prev = second["blocks"][-1]["elements"][0]
    assert PageState.from_value(prev["value"]) == PageState("list", "all", 0)


def test_help_and_unknown_input_answer_with_help(mailroom: Any) -> None:
    mailroom.driver.command(text="", user_id="UMEMBER")
    assert "/inbox search QUERY" in last_response(mailroom, 1)["text"]
    mailroom.driver.command(text="frobnicate <!channel>", user_id="UMEMBER")
    text = last_response(mailroom, 2)["text"]
    assert "I don't know" in text and "<!channel>" not in text and "Traceback" not in text
    mailroom.driver.command(text="list everything", user_id="UMEMBER")
    assert "`list` takes one of" in last_response(mailroom, 3)["text"]


def _client(mailroom: Any, name: str) -> int:
    with session_scope(mailroom.services.session_factory) as s:
        c = Client(name=name)
        s.add(c)
        s.flush()
        return c.id


def _link_of(mailroom: Any, conversation_id: int) -> int | None:
    with mailroom.services.session_factory() as s:
        return s.scalar(
            select(ConversationLink.client_id).where(
                ConversationLink.conversation_id == conversation_id
            )
        )


def test_link_and_unlink_thread_and_address_and_timeline(mailroom: Any) -> None:
    inbox, secret = two_accounts(mailroom)
    conv = ingest(mailroom, inbox, "Need a quote", sender="bob@acme.test")
    other = ingest(mailroom, inbox, "Follow-up", sender="carol@acme.test")
    hidden = ingest(mailroom, secret, "Hidden", sender="carol@acme.test")
    acme = _client(mailroom, "Acme Corp")

    mailroom.driver.command(text=f"link #{conv} acme corp", user_id="UMEMBER")
    assert "Linked conversation" in last_response(mailroom, 1)["text"]
    assert _link_of(mailroom, conv) == acme

    mailroom.driver.command(
        text="link <mailto:carol@acme.test|carol@acme.test> Acme Corp", user_id="UMEMBER"
    )
    assert "1 conversation linked" in last_response(mailroom, 2)["text"]
    assert _link_of(mailroom, other) == acme
    assert _link_of(mailroom, hidden) is None  # not the member's to link
    with mailroom.services.session_factory() as s:
        assert (
            s.scalar(
                select(ClientAddress.client_id).where(ClientAddress.email == "carol@acme.test")
            )
            == acme
        )

    mailroom.driver.command(text="client Acme Corp", user_id="UMEMBER")
    body = last_response(mailroom, 3)
    assert set(subjects(body)) == {"Need a quote", "Follow-up"}
    assert "Timeline of Acme Corp" in body["text"]

    mailroom.driver.command(text=f"unlink #{conv}", user_id="UMEMBER")
    assert "no longer linked" in last_response(mailroom, 4)["text"]
    assert _link_of(mailroom, conv) is None
    mailroom.driver.command(text="unlink carol@acme.test", user_id="UMEMBER")
    assert "1 conversation unlinked" in last_response(mailroom, 5)["text"]
    assert _link_of(mailroom, other) is None

    # An outsider cannot link (or see) the secret account's conversation.
    mailroom.driver.command(text=f"link #{hidden} Acme Corp", user_id="UMEMBER")
    assert "member of its channel" in last_response(mailroom, 6)["text"]
    assert _link_of(mailroom, hidden) is None
    mailroom.driver.command(text="link #999999 Acme Corp", user_id="UMEMBER")
    assert "No conversation" in last_response(mailroom, 7)["text"]
    mailroom.driver.command(text="client Nobody", user_id="UMEMBER")
    assert "No client called" in last_response(mailroom, 8)["text"]


def test_outsider_cannot_open_a_conversation_of_a_hidden_account(mailroom: Any) -> None:
    _, secret = two_accounts(mailroom)
    hidden = ingest(mailroom, secret, "Hidden salary data")
    mailroom.driver.block_action("UOUTSIDER", ids.CONV_OPEN, str(hidden), channel_id="CINBOX")
    mailroom.fake.wait_until(lambda: bool(mailroom.fake.calls), timeout=2)
    opened = [c for c in mailroom.fake.calls_to("views.open") if c.ok]
    assert all("Hidden salary data" not in json.dumps(c.arg("view")) for c in opened)


def test_clients_add_opens_a_modal_and_saves_the_client(mailroom: Any) -> None:
    mailroom.driver.command(text="clients add", user_id="UMEMBER")
    calls = mailroom.fake.wait_for("views.open")
    assert calls[0].ok, calls[0].response
    view_id = calls[0].response["view"]["id"]
    resp = mailroom.driver.view_submission(
        "UMEMBER",
        view_id,
        {
            "cl_name": {"v": "Globex"},
            "cl_emails": {"v": "hank@globex.test"},
            "cl_domains": {"v": "globex.test"},
        },
    )
    assert resp.status == 200 and resp.body == ""
    mailroom.settle()  # saved right after the ack
    with mailroom.services.session_factory() as s:
        c = s.scalars(select(Client).where(Client.name == "Globex")).one()
        assert [a.email for a in c.addresses] == ["hank@globex.test"]
    # a missing name is refused in the ack, on the name input
    mailroom.driver.command(text="clients add", user_id="UMEMBER")
    view_id = mailroom.fake.wait_for("views.open", 2)[1].response["view"]["id"]
    resp = mailroom.driver.view_submission("UMEMBER", view_id, {"cl_name": {"v": " "}})
    assert json.loads(resp.body)["errors"] == {"cl_name": "A client needs a name."}
    assert mailroom.fake.ack_problems == []


def _from_choice(view: dict[str, Any]) -> str:
    from bot.blocks import compose as cb

    block = next(b for b in view["blocks"] if b.get("block_id") == cb.FROM_BLOCK)
    return str(block["element"]["initial_option"]["value"])


def test_compose_in_an_account_channel_sends_from_that_account(mailroom: Any) -> None:
    """`/inbox compose` in #secret preselects secret@ (alphabetically after support@... and
    before it: the channel decides, not the order); elsewhere the first account."""
    mailroom.fake.add_channel("CSECRET", "secret", ["UBOT", "UADMIN"])
    mailroom.fake.add_channel("CZOO", "zoo", ["UBOT", "UADMIN"])
    first = mailroom.account("alpha@example.com", channel_id="CSECRET").id
    zoo = mailroom.account("zulu@example.com", channel_id="CZOO").id
    mailroom.driver.command(text="compose", user_id="UADMIN", channel_id="CZOO")
    mailroom.fake.wait_until(lambda: mailroom.fake.modal_stack("UADMIN"))
    assert _from_choice(mailroom.fake.modal_stack("UADMIN")[-1]) == str(zoo)
    mailroom.driver.command(text="compose", user_id="UADMIN", channel_id="CINBOX")
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.open")) >= 2)
    assert _from_choice(mailroom.fake.calls_to("views.open")[1].response["view"]) == str(first)
    # The App Home has New email too.
    before = len(mailroom.fake.calls_to("views.publish"))
    mailroom.driver.event({"type": "app_home_opened", "user": "UADMIN", "tab": "home"})
    mailroom.fake.wait_for("views.publish", before + 1)
    home = mailroom.fake.home("UADMIN")
    assert ids.HOME_NEW_EMAIL in json.dumps(home)
    mailroom.driver.block_action("UADMIN", ids.HOME_NEW_EMAIL, view=home["id"])
    mailroom.fake.wait_until(lambda: len(mailroom.fake.calls_to("views.open")) >= 3)
    assert "New email" in json.dumps(mailroom.fake.calls_to("views.open")[2].response["view"])


def test_help_names_the_shortcut_and_home_and_results_show_the_ids_it_accepts(
    mailroom: Any,
) -> None:
    inbox, _ = two_accounts(mailroom)
    conv = ingest(mailroom, inbox, "Where is my order")
    with session_scope(mailroom.services.session_factory) as s:
        s.add(Client(name="Acme"))
    mailroom.driver.command(text="help")
    text = json.dumps(last_response(mailroom, 1))
    assert "Compose email" in text and "Home" in text and "#42" in text
    mailroom.driver.command(text="list all")
    listed = json.dumps(last_response(mailroom, 2))
    assert f"#{conv}" in listed
    mailroom.driver.command(text=f"link #{conv} Acme")
    assert "Acme" in json.dumps(last_response(mailroom, 3))
    with session_scope(mailroom.services.session_factory) as s:
        assert s.scalars(select(ConversationLink.conversation_id)).all() == [conv]


def test_search_as_you_type_one_line_per_conversation(mailroom: Any) -> None:
    """Issue 19: "inv" finds "invoice"; a thread with three matching emails is one line."""
    from bot.store.ingest import ingest_message
    from bot.store.models import Account
    from tests.store.helpers import raw_mail as thread_mail

    inbox, _ = two_accounts(mailroom)
    with session_scope(mailroom.services.session_factory) as s:
        account = s.get_one(Account, inbox)
        prev: str | None = None
        for n in range(1, 4):
            mid = f"inv{n}@client.test"
            raw = thread_mail(
                mid,
                "Invoice 7" if n == 1 else "Re: Invoice 7",
                irt=prev,
                refs=[prev] if prev else [],
                date=f"Mon, 0{n} Jan 2024 10:00:00 +0000",
                body=f"about the invoice, take {n}",
            )
            ingest_message(s, account, raw)
            prev = mid
    ingest(mailroom, inbox, "Lunch on friday")
    mailroom.driver.command(text="search inv", user_id="UMEMBER")
    body = last_response(mailroom, 1)
    assert subjects(body) == ["Re: Invoice 7"]  # the newest matching email, once
    assert "3 of 3 emails match" in json.dumps(body)
    assert mailroom.fake.ack_problems == []
