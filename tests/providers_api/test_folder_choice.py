"""Folders for every provider (issue #17 point 2): Gmail labels and Microsoft 365 folders are
read from the API with readable names, and the sync honours the choice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.blocks import ids
from bot.blocks.accounts import B_CHANNEL, B_FOLDERS, edit_modal, read_sync_settings
from bot.folder_choices import gmail_choices, graph_choices, readable_folders, remember_names
from bot.store.db import session_scope
from bot.store.models import Account, Provider
from bot.sync.api_sync import gmail_client, gmail_label_chosen, graph_client
from bot.sync.scheduler import SyncScheduler
from tests.fakes.gmail_server import FakeGmail
from tests.fakes.graph_server import FakeGraph
from tests.fakes.oauth_server import FakeOAuth
from tests.home.test_home_flows import open_home, opened_view, wait_view
from tests.providers_api.conftest import ApiEnv, make_raw
from tests.slackfake import validate_view


def _set_folders(env: ApiEnv, account_id: int, folders: list[str]) -> None:
    with session_scope(env.factory) as s:
        s.get_one(Account, account_id).folders = folders


def test_gmail_labels_are_listed_with_readable_names(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GMAIL)
    support = env.gmail.create_label(email, "Support")
    billing = env.gmail.create_label(email, "billing/Invoices")
    labels = gmail_client(env.services, env.account(aid)).labels()
    assert {(x.id, x.type) for x in labels} >= {("INBOX", "system"), (support, "user")}
    assert gmail_choices(labels) == [
        ("Inbox", "INBOX"),
        ("Sent", "SENT"),
        ("Archive (All Mail not in Inbox)", "ARCHIVE"),
        ("billing/Invoices", billing),
        ("Support", support),
    ]


def test_gmail_sync_imports_only_new_mail_with_a_chosen_label(api_env: ApiEnv) -> None:
    env = api_env
    chosen_id, chosen_email = env.add_account(Provider.GMAIL)
    all_id, all_email = env.add_account(Provider.GMAIL)
    for aid, email in ((chosen_id, chosen_email), (all_id, all_email)):
        support = env.gmail.create_label(email, "Support")
        env.gmail.deliver(email, make_raw("In the inbox", mid=f"inbox.{aid}@x")[0])
        env.gmail.deliver(email, make_raw("Support only", mid=f"support.{aid}@x")[0], (support,))
        if aid == chosen_id:
            _set_folders(env, aid, [support])
    assert env.sync(chosen_id)[0] == 1
    assert [m.subject for m in env.messages(chosen_id)] == ["Support only"]
    assert env.sync(all_id)[0] == 2  # nothing chosen: today's behaviour, all mail

    # Later: the inbox message gets the label (history: labelsAdded) → now it is imported;
    # the known message keeps updating though it lost the label.
    box = env.gmail.box(chosen_email)
    [inbox_gid] = [k for k, m in box.messages.items() if m.message_id == f"inbox.{chosen_id}@x"]
    [support_gid] = [k for k, m in box.messages.items() if m.message_id == f"support.{chosen_id}@x"]
    env.gmail.relabel(chosen_email, inbox_gid, add=("Label_1",))
    env.gmail.relabel(chosen_email, support_gid, add=("INBOX",), remove=("Label_1", "UNREAD"))
    env.sync(chosen_id)
    assert {m.subject for m in env.messages(chosen_id)} == {"In the inbox", "Support only"}
    assert env.by_mid(chosen_id, f"support.{chosen_id}@x").is_read
    assert env.where(chosen_id, f"support.{chosen_id}@x") == {"INBOX"}


def test_gmail_label_choice_rules() -> None:
    labels = frozenset
    assert gmail_label_chosen(labels({"INBOX"}), [])
    assert gmail_label_chosen(labels({"INBOX"}), None)
    assert not gmail_label_chosen(labels({"INBOX"}), ["Label_1"])
    assert gmail_label_chosen(labels({"INBOX", "Label_1"}), ["Label_1"])
    # ARCHIVE: in none of Inbox, Sent, Trash, Spam, Drafts
    assert gmail_label_chosen(labels({"Label_9", "UNREAD"}), ["ARCHIVE"])
    assert not gmail_label_chosen(labels({"INBOX"}), ["ARCHIVE"])
    assert not gmail_label_chosen(labels({"SENT"}), ["ARCHIVE"])
    # typed by hand before labels were offered
    assert gmail_label_chosen(labels({"SENT"}), ["Sent"])


def test_graph_folders_are_listed_and_a_custom_one_is_synced(api_env: ApiEnv) -> None:
    env = api_env
    aid, email = env.add_account(Provider.GRAPH)
    projects = env.graph.add_folder(email, "Projects")
    vip = env.graph.add_folder(email, "VIP", parent="inbox")
    with graph_client(env.services, env.account(aid)) as graph:
        folders = graph.list_folders()
    by_id = {f.id: f for f in folders}
    assert by_id[vip].name == "Inbox / VIP" and by_id[projects].name == "Projects"
    assert {f.well_known for f in folders} >= {"inbox", "sentitems", "archive"}
    choices = graph_choices(folders)
    assert choices[:3] == [("Inbox", "inbox"), ("Sent Items", "sentitems"), ("Archive", "archive")]
    assert ("Inbox / VIP", vip) in choices and ("Projects", projects) in choices
    assert [t for t, _v in choices].count("Inbox") == 1  # not twice (well-known and by id)

    env.graph.deliver(email, make_raw("In the inbox", mid=f"gi.{aid}@x")[0])
    env.graph.deliver(email, make_raw("For VIPs", mid=f"gv.{aid}@x")[0], vip)
    _set_folders(env, aid, [vip])
    env.sync(aid)
    assert [m.subject for m in env.messages(aid)] == ["For VIPs"]
    assert env.where(aid, f"gv.{aid}@x") == {vip}


# -- through the App Home (signed Slack requests, fake Slack, the Gmail / Graph fakes) -----------


def _edit_modal(mailroom: Any, account_id: int) -> dict[str, Any]:
    home = open_home(mailroom, "UADMIN")
    before = len(mailroom.fake.calls_to("views.open"))
    mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=home["id"],
        block_id=f"account_{account_id}",
        selected_option={
            "text": {"type": "plain_text", "text": "Edit"},
            "value": f"edit:{account_id}",
        },
    )
    loading = opened_view(mailroom, before + 1)
    return wait_view(mailroom, loading["id"], "multi_static_select")


def _options(view: dict[str, Any]) -> list[tuple[str, str]]:
    [block] = [b for b in view["blocks"] if b.get("block_id") == B_FOLDERS]
    return [(o["text"]["text"], o["value"]) for o in block["element"]["options"]]


def _home_with(mailroom: Any, text: str) -> str:
    mailroom.fake.wait_until(lambda: text in json.dumps(mailroom.fake.home("UADMIN")))
    return json.dumps(mailroom.fake.home("UADMIN"))


def _submit(mailroom: Any, view: dict[str, Any], folders: list[str]) -> None:
    resp = mailroom.driver.view_submission(
        "UADMIN", view["id"], {B_CHANNEL: {"v": "CAPI"}, B_FOLDERS: {"v": folders}}
    )
    assert resp.status == 200 and resp.body == "", resp.body
    assert mailroom.fake.ack_problems == []


def test_gmail_labels_are_offered_in_the_edit_modal_and_the_chosen_one_is_synced(
    mailroom: Any, oauth: FakeOAuth, gmail_fake: FakeGmail, graph_fake: FakeGraph
) -> None:
    env = ApiEnv(mailroom.services, oauth, gmail_fake, graph_fake)
    aid, email = env.add_account(Provider.GMAIL)
    support = env.gmail.create_label(email, "Support")
    env.gmail.deliver(email, make_raw("In the inbox", mid=f"hi.{aid}@x")[0])
    env.gmail.deliver(email, make_raw("Support only", mid=f"hs.{aid}@x")[0], (support,))
    view = _edit_modal(mailroom, aid)
    text = json.dumps(view)
    assert "Labels to sync" in text and "IMAP" not in text and "from the server" not in text
    assert _options(view) == [
        ("Inbox", "INBOX"),
        ("Sent", "SENT"),
        ("Archive (All Mail not in Inbox)", "ARCHIVE"),
        ("Support", support),
    ]
    _submit(mailroom, view, [support])
    home = _home_with(mailroom, "Folders: Support")  # after the write after the ack
    assert env.account(aid).folders == [support]
    assert support not in home  # the name, not the id
    env.sync(aid)
    assert [m.subject for m in env.messages(aid)] == ["Support only"]
    # Opened again, the saved label is chosen.
    again = _edit_modal(mailroom, aid)
    [block] = [b for b in again["blocks"] if b.get("block_id") == B_FOLDERS]
    assert [o["value"] for o in block["element"]["initial_options"]] == [support]


def test_graph_folders_are_offered_in_the_edit_modal_and_the_chosen_one_is_synced(
    mailroom: Any, oauth: FakeOAuth, gmail_fake: FakeGmail, graph_fake: FakeGraph
) -> None:
    env = ApiEnv(mailroom.services, oauth, gmail_fake, graph_fake)
    aid, email = env.add_account(Provider.GRAPH)
    vip = env.graph.add_folder(email, "VIP", parent="inbox")
    env.graph.deliver(email, make_raw("In the inbox", mid=f"mi.{aid}@x")[0])
    env.graph.deliver(email, make_raw("For VIPs", mid=f"mv.{aid}@x")[0], vip)
    view = _edit_modal(mailroom, aid)
    text = json.dumps(view)
    assert "IMAP" not in text and "from the server" not in text
    options = _options(view)
    assert options[:3] == [("Inbox", "inbox"), ("Sent Items", "sentitems"), ("Archive", "archive")]
    assert ("Inbox / VIP", vip) in options
    _submit(mailroom, view, ["sentitems", vip])
    _home_with(mailroom, "Folders: Sent Items, Inbox / VIP")  # after the write after the ack
    assert env.account(aid).folders == ["sentitems", vip]
    env.sync(aid)
    assert [m.subject for m in env.messages(aid)] == ["For VIPs"]


def test_an_unreadable_label_list_says_so_without_imap_wording(
    mailroom: Any, oauth: FakeOAuth, gmail_fake: FakeGmail, graph_fake: FakeGraph
) -> None:
    env = ApiEnv(mailroom.services, oauth, gmail_fake, graph_fake)
    aid, _email = env.add_account(Provider.GMAIL, base_url="https://127.0.0.1:9/")
    home = open_home(mailroom, "UADMIN")
    mailroom.driver.block_action(
        "UADMIN",
        ids.HOME_ACCOUNT_MENU,
        view=home["id"],
        block_id=f"account_{aid}",
        selected_option={"text": {"type": "plain_text", "text": "Edit"}, "value": f"edit:{aid}"},
    )
    loading = opened_view(mailroom, 1)
    view = wait_view(mailroom, loading["id"], "Could not read")
    text = json.dumps(view)
    assert "Could not read the labels from Gmail" in text
    assert "IMAP" not in text and "no IMAP settings" not in text


def test_edit_modal_keeps_a_choice_the_provider_no_longer_lists_and_names_are_remembered() -> None:
    view = edit_modal(
        account_id=1,
        email="box@gmail.test",
        channel_id="C1",
        interval=300,
        folders=["Label_7", "INBOX"],
        auto_link=True,
        server_folders=[("Inbox", "INBOX"), ("Support", "Label_1"), ("Long", "x" * 151)],
        provider="gmail",
    )
    assert validate_view(view) == []
    assert _options(view) == [
        ("Inbox", "INBOX"),
        ("Support", "Label_1"),
        ("Label_7 (not in the list)", "Label_7"),
    ]  # an id too long for an option value is left out, not cut short
    [block] = [b for b in view["blocks"] if b.get("block_id") == B_FOLDERS]
    chosen = block["element"]["initial_options"]
    assert [o["value"] for o in chosen] == ["INBOX", "Label_7"]
    state = {B_FOLDERS: {"v": {"type": "multi_static_select", "selected_options": chosen}}}
    form, _errors = read_sync_settings(state)
    assert form.folders == ("INBOX", "Label_7") and form.folder_names == (("INBOX", "Inbox"),)
    before = {"folder_names": {"Label_7": "Old support", "Label_2": "Dropped"}, "api": {}}
    config = remember_names(before, form.folders, form.folder_names)
    assert config == {"folder_names": {"INBOX": "Inbox", "Label_7": "Old support"}, "api": {}}
    assert readable_folders("gmail", ["INBOX", "Label_7", "SENT"], config) == (
        "Inbox",
        "Old support",
        "Sent",
    )
    for provider in ("imap", "gmail", "graph"):
        failed = edit_modal(
            account_id=1,
            email="a@b.c",
            channel_id=None,
            interval=300,
            folders=[],
            auto_link=True,
            server_folders=None,
            folder_error="unreachable",
            provider=provider,
        )
        assert validate_view(failed) == []
        assert ("IMAP" in json.dumps(failed) or "server" in json.dumps(failed)) == (
            provider == "imap"
        )


def test_sync_now_runs_a_gmail_and_a_microsoft_365_account(
    mailroom: Any, oauth: FakeOAuth, gmail_fake: FakeGmail, graph_fake: FakeGraph
) -> None:
    """Issue #17 point 3's done-when: *Sync now* (the App Home) → the worker's next tick runs
    the API accounts against the fakes."""
    env = ApiEnv(mailroom.services, oauth, gmail_fake, graph_fake)
    gmail_id, gmail_email = env.add_account(Provider.GMAIL)
    graph_id, graph_email = env.add_account(Provider.GRAPH)
    env.gmail.deliver(gmail_email, make_raw("Gmail news", mid=f"sn.{gmail_id}@x")[0])
    env.graph.deliver(graph_email, make_raw("Graph news", mid=f"sn.{graph_id}@x")[0])
    later = datetime.now(UTC) + timedelta(hours=1)
    with session_scope(env.factory) as s:
        for aid in (gmail_id, graph_id):
            s.get_one(Account, aid).next_sync_at = later
    home = open_home(mailroom, "UADMIN")
    for aid in (gmail_id, graph_id):
        mailroom.driver.block_action(
            "UADMIN",
            ids.HOME_ACCOUNT_SYNC_NOW,
            str(aid),
            view=home["id"],
            block_id=f"account_buttons_{aid}",
        )

    def due() -> bool:
        with env.factory() as s:
            when = [s.get_one(Account, a).next_sync_at or later for a in (gmail_id, graph_id)]
        return all((w if w.tzinfo else w.replace(tzinfo=UTC)) < later for w in when)

    mailroom.fake.wait_until(due)
    scheduler = SyncScheduler(mailroom.services, tick_seconds=3600, max_workers=2, idle=False)
    try:
        scheduler.tick()
    finally:
        scheduler.stop()  # waits for the runs
    assert [m.subject for m in env.messages(gmail_id)] == ["Gmail news"]
    assert [m.subject for m in env.messages(graph_id)] == ["Graph news"]
    with env.factory() as s:
        for aid in (gmail_id, graph_id):
            account = s.get_one(Account, aid)
            assert account.last_success_at is not None and account.last_error is None
