"""Clients: auto-link (exact, domain, webmail excluded), manual link/unlink audit, CSV import,
timeline order."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.store.clients import (
    ClientError,
    clients_for_addresses,
    create_client,
    delete_client,
    edit_client,
    find_client_for_address,
    import_clients_csv,
    is_webmail_domain,
    link_conversation,
    list_clients,
    normalize_email,
    unlink_conversation,
)
from bot.store.conversations import (
    ConversationFilter,
    client_timeline,
    count_conversations,
    list_conversations,
)
from bot.store.db import SessionFactory, session_scope
from bot.store.ingest import ingest_message
from bot.store.models import AuditLog, ConversationLink, LinkMethod
from tests.store.helpers import make_account, raw_mail


def test_webmail_domains() -> None:
    for d in (
        "gmail.com",
        "hotmail.co.uk",
        "yahoo.fr",
        "gmx.net",
        "yandex.ru",
        "proton.me",
        "qq.com",
    ):
        assert is_webmail_domain(d), d
    assert not is_webmail_domain("acme.example")


def test_auto_link_exact_address_beats_domain(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        company = create_client(s, name="Acme", domains=["acme.example"])
        person = create_client(s, name="Bob at Acme", emails=["Bob@Acme.example"])
        r = ingest_message(s, acc, raw_mail("a@x", sender="Bob <bob@acme.example>"))
        assert r.linked_client_id == person.id
        other = ingest_message(s, acc, raw_mail("b@x", "Other", sender="eve@sales.acme.example"))
        assert other.linked_client_id == company.id  # subdomain matches the client's domain
        auto = other.conversation.link
        assert auto is not None
        assert auto.method == LinkMethod.AUTO


def test_batch_owner_lookup_agrees_with_the_single_lookup(session_factory: SessionFactory) -> None:
    """Ingest looks up a whole batch's owners at once: same answers as one by one."""
    with session_scope(session_factory) as s:
        acme = create_client(s, name="Acme", emails=["boss@gmail.com"], domains=["acme.com"])
        eu = create_client(s, name="Acme EU", domains=["eu.acme.com"])
        solo = create_client(s, name="Solo", emails=["Solo@Example.org"])
        s.flush()
        addresses = [
            "boss@gmail.com",  # an exact address on a webmail domain
            "other@gmail.com",  # webmail: never by domain
            "a@acme.com",
            "b@mail.eu.acme.com",  # the most specific domain wins
            "c@sales.acme.com",
            " <SOLO@example.org> ",  # normalized like the single lookup
            "nobody@else.example",
            "not-an-address",
        ]
        batch = clients_for_addresses(s, addresses)
        single = {}
        for a in addresses:
            client = find_client_for_address(s, a)
            if client is not None:
                single[normalize_email(a)] = client.id
        assert batch == single
        assert batch == {
            "boss@gmail.com": acme.id,
            "a@acme.com": acme.id,
            "b@mail.eu.acme.com": eu.id,
            "c@sales.acme.com": acme.id,
            "solo@example.org": solo.id,
        }


def test_auto_link_skips_webmail_and_refuses_webmail_domains(
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        with pytest.raises(ClientError, match="webmail"):
            create_client(s, name="Gmail people", domains=["gmail.com"])
        create_client(s, name="Jo", emails=["jo@gmail.com"])
        r = ingest_message(s, acc, raw_mail("a@x", sender="someone@gmail.com"))
        assert r.linked_client_id is None
        jo = find_client_for_address(s, "JO@gmail.com")
        assert jo is not None
        assert jo.name == "Jo"


def test_outbound_links_by_first_recipient_and_auto_link_off(
    session_factory: SessionFactory,
) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        client = create_client(s, name="Zed", domains=["zed.example"])
        r = ingest_message(
            s, acc, raw_mail("o@x", sender="team@ours.example", to="Ann <ann@zed.example>")
        )
        assert r.linked_client_id == client.id
        quiet = make_account(s, "quiet@ours.example", auto_link=False)
        r2 = ingest_message(s, quiet, raw_mail("q@x", sender="x@zed.example"))
        assert r2.linked_client_id is None


def test_manual_link_and_unlink_are_audited(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        a = create_client(s, name="A", emails=["a@a.example"])
        b = create_client(s, name="B", emails=["b@b.example"])
        conv = ingest_message(s, acc, raw_mail("m@x", sender="a@a.example")).conversation
        assert conv.link is not None
        assert conv.link.client_id == a.id
        link = link_conversation(s, conv.id, b.id, actor="U123")
        assert (link.client_id, link.method, link.linked_by) == (b.id, LinkMethod.MANUAL, "U123")
        assert link.linked_at is not None
        assert unlink_conversation(s, conv.id, actor="U456")
        assert not unlink_conversation(s, conv.id, actor="U456")
        conv_id = conv.id
    with session_scope(session_factory) as s:
        assert (
            s.scalar(select(ConversationLink).where(ConversationLink.conversation_id == conv_id))
            is None
        )
        rows = s.scalars(
            select(AuditLog).where(AuditLog.conversation_id == conv_id).order_by(AuditLog.id)
        ).all()
        assert [(r.action, r.actor) for r in rows] == [
            ("auto_link", "system"),
            ("link", "U123"),
            ("unlink", "U456"),
        ]
        assert rows[1].details == {"client_id": b.id, "previous_client_id": a.id}


def test_edit_delete_list(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        c = create_client(s, name="Old", emails=["x@old.example"])
        other = create_client(s, name="Other", emails=["y@other.example"])
        with pytest.raises(ClientError, match="already belongs"):
            edit_client(s, c.id, add_emails=["y@other.example"])
    with session_scope(session_factory) as s:
        edit_client(
            s, c.id, name="New", add_domains=["new.example"], remove_emails=["x@old.example"]
        )
        assert [x.name for x in list_clients(s, query="new.example")] == ["New"]
        delete_client(s, other.id)
        assert [x.name for x in list_clients(s)] == ["New"]


CSV = (
    "name,company,emails,domains\n"
    "Acme,Acme Inc,ann@acme.example; bob@acme.example,acme.example\n"
    ",No name,nobody@x.example,\n"
    "Bad Mail,,not-an-address,\n"
    "Webmail,,,gmail.com\n"
    '"Quoted, Name",Q Ltd,q@q.example carl@q.example,q.example\n'
    "Dup,,ann@acme.example,\n"
)


def test_csv_import_reports_bad_rows_with_line_numbers(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        report = import_clients_csv(s, CSV, actor="cli")
        assert len(report.created) == 2
        assert [e.line for e in report.errors] == [3, 4, 5, 7]
        assert "missing name" in report.errors[0].message
        assert "webmail" in report.errors[2].message
        assert "already belongs" in report.errors[3].message
    with session_scope(session_factory) as s:
        names = {c.name: sorted(a.email for a in c.addresses) for c in list_clients(s)}
        assert names == {
            "Acme": ["ann@acme.example", "bob@acme.example"],
            "Quoted, Name": ["carl@q.example", "q@q.example"],
        }
        # Importing again changes nothing and reports no new errors for the good rows.
        again = import_clients_csv(s, CSV)
        assert again.created == [] and len(again.updated) == 2


def test_timeline_newest_first_and_filters(session_factory: SessionFactory) -> None:
    with session_scope(session_factory) as s:
        acc = make_account(s)
        client = create_client(s, name="T", domains=["t.example"])
        days = ["02", "05", "03"]
        for i, d in enumerate(days):
            ingest_message(
                s, acc, raw_mail(f"t{i}@x", f"Topic {i}", sender=f"p{i}@t.example",
                                 date=f"Tue, {d} Jan 2024 10:00:00 +0000"),
            )  # fmt: skip
        ingest_message(s, acc, raw_mail("n@x", "Unlinked", sender="z@zzz.example"), is_read=True)
        timeline = client_timeline(s, client.id, account_ids=[acc.id])
        assert [c.subject for c in timeline] == ["Topic 1", "Topic 2", "Topic 0"]
        assert count_conversations(s, filter="linked", account_ids=None) == 3
        assert [c.subject for c in list_conversations(s, filter="unlinked", account_ids=None)] == [
            "Unlinked"
        ]
        assert count_conversations(s, filter=ConversationFilter.UNREAD, account_ids=None) == 3
        assert count_conversations(s, filter="all", account_ids=[acc.id + 99]) == 0
