"""Pure Block Kit builders: Slack's limits hold and untrusted text stays inert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.blocks import ids
from bot.blocks.accounts import (
    B_CHANNEL,
    B_EMAIL,
    B_FOLDERS,
    B_IMAP_PORT,
    B_IMAP_PW,
    ConnectionOutcome,
    RunSummary,
    add_imap_modal,
    edit_modal,
    provider_chooser_modal,
    read_imap_form,
    read_sync_settings,
    remove_modal,
    sync_log_modal,
)
from bot.blocks.clients import client_modal, read_client_form
from bot.blocks.home import (
    AccountSummary,
    ClientSummary,
    HomeData,
    HomePages,
    home_view,
)
from bot.blocks.search import PageState, ResultItem, results_message, search_modal, search_state
from bot.handlers.commands.parse import parse_command, parse_thread_ref
from tests.slackfake import validate_message_blocks, validate_view

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def item(i: int, **kw: object) -> ResultItem:
    base: dict[str, object] = {
        "conversation_id": i,
        "subject": f"Subject {i}",
        "sender_name": "Anna",
        "sender_email": "anna@example.org",
        "date": NOW,
        "snippet": "hello there",
        "account_email": "support@example.com",
    }
    base.update(kw)
    return ResultItem(**base)  # type: ignore[arg-type]


def test_result_text_is_escaped_so_mail_cannot_ping_or_fake_links() -> None:
    evil = item(1, subject="<!channel> pay <https://evil.test|bank>", snippet="a & b <@U1>")
    msg = results_message(
        title="Search: x", items=[evil], state=PageState("search", "x"), has_next=False
    )
    text = msg["blocks"][1]["text"]["text"]
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text and "a &amp; b &lt;@U1&gt;" in text
    assert validate_message_blocks(msg["blocks"]) == []


def test_results_page_has_open_buttons_thread_links_and_paging_state() -> None:
    items = [item(i, thread_url=f"https://slack.com/archives/C1/p{i}") for i in range(10)]
    msg = results_message(
        title="List", items=items, state=PageState("list", "unread", 1), has_next=True, total=25
    )
    assert validate_message_blocks(msg["blocks"]) == []
    opens = [b["accessory"]["value"] for b in msg["blocks"] if b.get("accessory")]
    assert opens == [str(i) for i in range(10)]
    assert "11-20 of 25" in msg["blocks"][0]["text"]["text"]
    nav = msg["blocks"][-1]["elements"]
    states = {e["action_id"]: PageState.from_value(e["value"]) for e in nav}
    assert states[f"{ids.RESULTS_PAGE}:prev"] == PageState("list", "unread", 0)
    assert states[f"{ids.RESULTS_PAGE}:next"] == PageState("list", "unread", 2)
    assert any(
        "View thread in Slack" in b["elements"][0]["text"]
        for b in msg["blocks"]
        if b["type"] == "context"
    )


def test_search_hit_open_value_names_the_email() -> None:
    assert item(3, message_id=9).open_value == "3:9"
    assert PageState.from_value("not json") is None
    assert PageState.from_value('{"k": "evil", "q": "", "p": 0}') is None


def test_search_modal_dispatches_on_typing_and_keeps_state() -> None:
    view = search_modal(query="invoice", filter_name="unread", items=[item(1)], has_next=True)
    assert validate_view(view) == []
    el = view["blocks"][0]["element"]
    assert view["blocks"][0]["dispatch_action"] is True
    assert "on_character_entered" in el["dispatch_action_config"]["trigger_actions_on"]
    assert el["action_id"] == ids.SEARCH_QUERY
    view["state"] = {
        "values": {
            "search_q": {ids.SEARCH_QUERY: {"type": "plain_text_input", "value": "refund"}},
            "search_f": {
                ids.SEARCH_FILTER: {"selected_option": {"value": "archived"}},
            },
        }
    }
    assert search_state(view) == ("refund", "archived", 0)


def test_home_for_a_member_has_filters_with_counts_and_no_admin_parts() -> None:
    view = home_view(
        HomeData(
            is_admin=False,
            counts={"all": 7, "unread": 2, "archived": 1, "linked": 3, "unlinked": 4},
            recent=[item(1)],
            visible_accounts=1,
        )
    )
    assert validate_view(view) == []
    texts = str(view)
    assert "Unread (2)" in texts and "Unlinked (4)" in texts
    assert ids.HOME_ADD_ACCOUNT not in texts and ids.HOME_ACCOUNT_MENU not in texts


def test_admin_home_stays_within_100_blocks_and_pages_long_lists() -> None:
    accounts = [
        AccountSummary(
            id=i,
            email=f"a{i}@example.com",
            provider="imap",
            channel_id="C1",
            status="error" if i == 0 else "active",
            last_error="Login failed <script>",
            last_sync_at=NOW,
            next_sync_at=NOW + timedelta(minutes=5),
        )
        for i in range(8)
    ]
    clients = [ClientSummary(id=i, name=f"Client {i}", addresses=("x@y.z",)) for i in range(8)]
    templates = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"t{i}"}} for i in range(200)
    ]
    view = home_view(
        HomeData(
            is_admin=True,
            counts={},
            recent=[item(i) for i in range(8)],
            visible_accounts=1,
            accounts=accounts,
            accounts_total=30,
            clients=clients,
            clients_total=9,
            template_blocks=templates,
            pages=HomePages(accounts=1, clients=0),
        )
    )
    assert validate_view(view) == []
    assert len(view["blocks"]) <= 100
    text = str(view)
    assert "Login failed &lt;script&gt;" in text
    assert f"{ids.HOME_PAGE}:accounts_prev" in text and f"{ids.HOME_PAGE}:accounts_next" in text
    assert f"{ids.HOME_PAGE}:clients_next" in text
    assert HomePages.from_metadata(view["private_metadata"]) == HomePages(1, 0)
    menu = next(b for b in view["blocks"] if b.get("block_id") == "account_0")["accessory"]
    # account 0 is failing: Reconnect (a new password) takes Sync now's place
    assert [o["value"] for o in menu["options"]] == [
        "reconnect:0",
        "edit:0",
        "pause:0",
        "log:0",
        "remove:0",
    ]


def test_account_modals_pass_block_kit_checks() -> None:
    for view in (
        provider_chooser_modal(),
        add_imap_modal(),
        add_imap_modal(testing=True),
        add_imap_modal(outcome=ConnectionOutcome(False, "Login failed")),
        edit_modal(
            account_id=1,
            email="a@b.c",
            channel_id="C1",
            interval=300,
            folders=["INBOX"],
            auto_link=True,
            server_folders=["INBOX", "Sent", "Archive"],
        ),
        edit_modal(
            account_id=1,
            email="a@b.c",
            channel_id=None,
            interval=42,
            folders=["X"],
            auto_link=False,
            server_folders=None,
            folder_error="timeout",
        ),
        sync_log_modal(
            email="a@b.c",
            runs=[
                RunSummary(
                    NOW,
                    NOW,
                    "manual",
                    "error",
                    error="boom",
                    problems=[{"folder": "INBOX", "uid": 4, "problem": "bad"}],
                )
            ],
        ),
        remove_modal(account_id=1, email="a@b.c", conversation_count=3),
        client_modal(),
        client_modal(client_id=3, name="Acme", emails=["a@acme.com"], domains=["acme.com"]),
    ):
        assert validate_view(view) == [], view.get("title")
    assert "Gmail" in str(provider_chooser_modal()) and "not yet available" in str(
        provider_chooser_modal()
    )


def _v(value: str) -> dict[str, object]:
    return {"v": {"type": "plain_text_input", "value": value}}


def test_imap_form_reports_errors_by_input_block() -> None:
    form, errors = read_imap_form({B_EMAIL: _v("nope"), B_IMAP_PORT: _v("99999")})
    assert set(errors) >= {B_EMAIL, B_IMAP_PORT, B_IMAP_PW, B_CHANNEL}
    values = {
        B_EMAIL: _v("Support@Example.com"),
        "acc_imap_host": _v("imap.example.com"),
        B_IMAP_PORT: _v("993"),
        "acc_imap_sec": {"v": {"selected_option": {"value": "ssl"}}},
        B_IMAP_PW: _v("s3cret"),
        "acc_smtp_host": _v("smtp.example.com"),
        "acc_smtp_port": _v("587"),
        B_CHANNEL: {"v": {"selected_conversation": "C9"}},
        "acc_freq": {"v": {"selected_option": {"value": "900"}}},
        B_FOLDERS: _v("INBOX, Sent, INBOX"),
        "acc_autolink": {"v": {"selected_options": []}},
    }
    form, errors = read_imap_form(values)
    assert errors == {}
    assert form.email == "support@example.com" and form.imap_username == "support@example.com"
    assert form.smtp_password == "s3cret" and form.folders == ("INBOX", "Sent")
    assert form.interval == 900 and form.auto_link is False and form.channel_id == "C9"
    settings, errs = read_sync_settings(
        {
            B_CHANNEL: {"v": {"selected_conversation": "C2"}},
            B_FOLDERS: {"v": {"selected_options": [{"value": "Archive"}]}},
            "acc_freq": {"v": {"selected_option": {"value": "60"}}},
        }
    )
    assert errs == {} and settings.folders == ("Archive",) and settings.interval == 60


def test_client_form_splits_addresses_and_domains() -> None:
    form = read_client_form(
        {
            "cl_name": _v(" Acme "),
            "cl_emails": _v("A@acme.com, b@acme.com\nA@acme.com"),
            "cl_domains": _v("@acme.com"),
        }
    )
    assert form["name"] == "Acme"
    assert form["emails"] == ["a@acme.com", "b@acme.com"] and form["domains"] == ["acme.com"]


def test_command_parsing() -> None:
    assert parse_command("").name == "help"
    assert parse_command("list").args == ("all",)
    assert parse_command("list bogus").error
    assert parse_command("search  from:a@b.c  invoice").args == ("from:a@b.c  invoice",)
    assert parse_command("link <mailto:a@b.com|a@b.com> Acme Corp").args == ("a@b.com", "Acme Corp")
    assert parse_command("unlink #12").args == ("#12",)
    assert parse_command("clients add").name == "clients_add"
    assert parse_command("frobnicate now").name == "unknown"
    ref = parse_thread_ref("https://team.slack.com/archives/C0123/p1700000000123456")
    assert ref is not None and (ref.channel_id, ref.ts) == ("C0123", "1700000000.123456")
    ref = parse_thread_ref(
        "https://team.slack.com/archives/C0123/p1700000001000000?thread_ts=1700000000.123456&cid=C0123"
    )
    assert ref is not None and ref.ts == "1700000000.123456"
    assert parse_thread_ref("#42") is not None and parse_thread_ref("a@b.c") is None
