"""The Slack harness itself, driven through the official slack_sdk / slack_bolt clients."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    SectionBlock,
    StaticSelectElement,
)

from tests.slackfake import (
    FakeSlack,
    SlackDriver,
    bolt_wsgi,
    serve_wsgi,
    validate_message_blocks,
    validate_view,
)


@pytest.fixture
def client(fake_slack: FakeSlack) -> WebClient:
    return WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)


def section(text: str, block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


def modal(blocks: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    view = {
        "type": "modal",
        "callback_id": "reply",
        "title": {"type": "plain_text", "text": "Reply"},
        "submit": {"type": "plain_text", "text": "Send"},
        "blocks": blocks if blocks is not None else [section("hello")],
    }
    view.update(extra)
    return view


def api_error(exc: pytest.ExceptionInfo[SlackApiError]) -> str:
    return str(exc.value.response["error"])


# -- messages ---------------------------------------------------------------------


def test_post_thread_update_delete_and_permalink(fake_slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="CINBOX", text="New mail", blocks=[section("*Hi*")])
    r1 = client.chat_postMessage(channel="CINBOX", text="reply 1", thread_ts=parent["ts"])
    # Replying to a reply lands in the same thread, as in Slack.
    r2 = client.chat_postMessage(channel="CINBOX", text="reply 2", thread_ts=r1["ts"])

    assert float(parent["ts"]) < float(r1["ts"]) < float(r2["ts"])
    assert [m["text"] for m in fake_slack.thread("CINBOX", parent["ts"])] == ["reply 1", "reply 2"]
    stored_parent = fake_slack.message("CINBOX", parent["ts"])
    assert stored_parent is not None
    assert stored_parent["reply_count"] == 2
    assert stored_parent["blocks"] == [section("*Hi*")]
    assert [m["ts"] for m in fake_slack.top_level("CINBOX")] == [parent["ts"]]

    updated = client.chat_update(
        channel="CINBOX", ts=parent["ts"], text="Read", blocks=[section("done")]
    )
    assert updated["ts"] == parent["ts"]
    stored_parent = fake_slack.message("CINBOX", parent["ts"])
    assert stored_parent is not None
    assert stored_parent["text"] == "Read"
    assert stored_parent["blocks"] == [section("done")]

    link = client.chat_getPermalink(channel="CINBOX", message_ts=r1["ts"])["permalink"]
    assert link.startswith("https://fake.slack.com/archives/CINBOX/p")
    assert f"thread_ts={parent['ts']}" in link

    client.chat_delete(channel="CINBOX", ts=r2["ts"])
    assert fake_slack.message("CINBOX", r2["ts"]) is None
    assert [c.method for c in fake_slack.calls].count("chat.postMessage") == 3


def test_message_errors_use_slack_names(fake_slack: FakeSlack, client: WebClient) -> None:
    fake_slack.add_channel("CELSE", "elsewhere", ["UADMIN"])
    human = fake_slack.add_message("CINBOX", "UMEMBER", "a person wrote this")
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: client.chat_postMessage(channel="CNOPE", text="x"), "channel_not_found"),
        (lambda: client.chat_postMessage(channel="CELSE", text="x"), "not_in_channel"),
        (
            lambda: client.chat_postMessage(channel="CINBOX", text="x", thread_ts="1.2"),
            "thread_not_found",
        ),
        (lambda: client.chat_postMessage(channel="CINBOX"), "no_text"),
        (lambda: client.chat_postMessage(channel="CINBOX", text="x" * 40_001), "msg_too_long"),
        (lambda: client.chat_update(channel="CINBOX", ts="1.2", text="x"), "message_not_found"),
        (
            lambda: client.chat_update(channel="CINBOX", ts=human["ts"], text="x"),
            "cant_update_message",
        ),
        (lambda: client.chat_delete(channel="CINBOX", ts=human["ts"]), "cant_delete_message"),
        (
            lambda: client.chat_postEphemeral(channel="CINBOX", user="UOUTSIDER", text="x"),
            "user_not_in_channel",
        ),
    ]
    for call, error in cases:
        with pytest.raises(SlackApiError) as exc:
            call()
        assert api_error(exc) == error
    assert fake_slack.message("CINBOX", human["ts"]) is not None
    assert len(fake_slack.top_level("CINBOX")) == 1  # nothing was posted


def test_ephemeral_dm_and_join(fake_slack: FakeSlack, client: WebClient) -> None:
    client.chat_postEphemeral(channel="CINBOX", user="UMEMBER", text="only you")
    assert [(e["user"], e["text"]) for e in fake_slack.ephemerals] == [("UMEMBER", "only you")]

    dm = client.conversations_open(users="UOUTSIDER")["channel"]["id"]
    assert dm.startswith("D")
    assert client.conversations_open(users="UOUTSIDER")["channel"]["id"] == dm
    client.chat_postMessage(channel=dm, text="psst")
    assert [m["text"] for m in fake_slack.messages(dm)] == ["psst"]

    fake_slack.add_channel("CPUB", "public", ["UADMIN"])
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="CPUB", text="x")
    client.conversations_join(channel="CPUB")
    assert client.conversations_info(channel="CPUB")["channel"]["is_member"] is True
    client.chat_postMessage(channel="CPUB", text="now I can")


def test_auth_is_required(fake_slack: FakeSlack) -> None:
    for token, error in [(None, "not_authed"), ("xoxb-wrong", "invalid_auth")]:
        with pytest.raises(SlackApiError) as exc:
            WebClient(token=token, base_url=fake_slack.api_url).auth_test()
        assert api_error(exc) == error
    fake_slack.revoke_token(fake_slack.bot_token)
    with pytest.raises(SlackApiError) as exc:
        WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url).auth_test()
    assert api_error(exc) == "token_revoked"


def test_users_and_auth_test(client: WebClient) -> None:
    me = client.auth_test()
    assert (me["user_id"], me["team_id"]) == ("UBOT", "T0FAKE0001")
    assert client.users_info(user="UADMIN")["user"]["is_admin"] is True
    assert client.users_info(user="UMEMBER")["user"]["is_admin"] is False
    assert client.users_lookupByEmail(email="max@example.com")["user"]["id"] == "UMEMBER"
    ids = {u["id"] for u in client.users_list()["members"]}
    assert ids == {"UBOT", "UADMIN", "UMEMBER", "UOUTSIDER"}
    with pytest.raises(SlackApiError) as exc:
        client.users_info(user="UNOBODY")
    assert api_error(exc) == "user_not_found"


def test_members_cursor_pagination_honours_limit(fake_slack: FakeSlack, client: WebClient) -> None:
    members = [f"U{i:05d}" for i in range(250)]
    fake_slack.add_channel("CBIG", "big", members)
    pages = [page["members"] for page in client.conversations_members(channel="CBIG", limit=100)]
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [m for p in pages for m in p] == members
    cursors = [c.args.get("cursor") for c in fake_slack.calls_to("conversations.members")]
    assert cursors[0] in (None, "") and all(cursors[1:])


def test_conversations_list_hides_private_channels_without_the_bot(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    fake_slack.add_channel("GSECRET", "secret", ["UADMIN"], is_private=True)
    fake_slack.add_channel("GOURS", "ours", ["UBOT"], is_private=True)
    listed = client.conversations_list(types="public_channel,private_channel")["channels"]
    assert {c["id"] for c in listed} == {"CINBOX", "GOURS"}


# -- validation -------------------------------------------------------------------


def test_valid_rich_message_and_modal_built_with_sdk_models_are_accepted(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    options = [Option(text=f"Client {i}", value=f"c{i}") for i in range(100)]
    blocks = [
        HeaderBlock(text="Invoice overdue"),
        SectionBlock(
            text=MarkdownTextObject(text="*From:* ann@example.com"),
            fields=[MarkdownTextObject(text=f"f{i}") for i in range(10)],
            accessory=ButtonElement(text="Open", action_id="open", value="thread-1"),
        ),
        DividerBlock(),
        ContextBlock(elements=[MarkdownTextObject(text="3 messages")]),
        ActionsBlock(
            block_id="acts",
            elements=[
                ButtonElement(text="Reply", action_id="reply", value="t1", style="primary"),
                StaticSelectElement(
                    placeholder="Link client",
                    action_id="link",
                    options=options,
                    initial_option=options[3],
                ),
            ],
        ),
    ]
    client.chat_postMessage(channel="CINBOX", text="fallback", blocks=blocks)
    view = {
        **modal(),
        "private_metadata": "x" * 3000,
        "blocks": [
            InputBlock(
                block_id="body",
                label="Message",
                element=PlainTextInputElement(action_id="text", multiline=True, max_length=3000),
            ).to_dict(),
            *[section(f"line {i}") for i in range(99)],
        ],
    }
    client.views_open(trigger_id=fake_slack.new_trigger_id(), view=view)
    assert len(fake_slack.views) == 1


@pytest.mark.parametrize(
    ("blocks", "fragment"),
    [
        ([section(f"b{i}") for i in range(51)], "no more than 50 items"),
        ([section("x" * 3001)], "/blocks/0/text/text"),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
            "/blocks/0/fields",
        ),
        (
            [{"type": "section", "fields": [{"type": "mrkdwn", "text": "x" * 2001}]}],
            "/fields/0/text",
        ),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "/blocks/0/text/text",
        ),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}], "plain_text"),
        ([{"type": "section", "text": "bare string"}], "text object"),
        ([{"type": "section"}], "text or fields"),
        ([{"type": "carousel_of_doom"}], "unsupported type"),
        (
            [
                {
                    "type": "input",
                    "label": {"type": "plain_text", "text": "x"},
                    "element": {"type": "plain_text_input"},
                }
            ],
            "not allowed in messages",
        ),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {"type": "button", "text": {"type": "plain_text", "text": "b" * 76}}
                    ],
                }
            ],
            "/elements/0/text/text",
        ),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "action_id": "go",
                            "text": {"type": "plain_text", "text": "a"},
                        },
                        {
                            "type": "button",
                            "action_id": "go",
                            "text": {"type": "plain_text", "text": "b"},
                        },
                    ],
                }
            ],
            "duplicate action_id",
        ),
        ([section("a", "same"), section("b", "same")], "duplicate block_id"),
        ([section("a", "x" * 256)], "/blocks/0/block_id"),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "button",
                            "text": {"type": "plain_text", "text": "a"},
                            "value": "v" * 2001,
                        }
                    ],
                }
            ],
            "/elements/0/value",
        ),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "static_select",
                            "action_id": "s",
                            "options": [
                                {"text": {"type": "plain_text", "text": "o"}, "value": "v" * 151}
                            ],
                        }
                    ],
                }
            ],
            "/options/0/value",
        ),
        (
            [
                {
                    "type": "actions",
                    "elements": [
                        {
                            "type": "static_select",
                            "action_id": "s",
                            "options": [
                                {"text": {"type": "plain_text", "text": str(i)}, "value": str(i)}
                                for i in range(101)
                            ],
                        }
                    ],
                }
            ],
            "no more than 100 items",
        ),
        (
            [{"type": "actions", "elements": [{"type": "button", "action_id": "b"}]}],
            "missing required field: text",
        ),
    ],
)
def test_invalid_message_blocks_are_rejected(
    client: WebClient, fake_slack: FakeSlack, blocks: list[dict[str, Any]], fragment: str
) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="CINBOX", text="fallback", blocks=blocks)
    assert api_error(exc) == "invalid_blocks"
    messages = exc.value.response["response_metadata"]["messages"]
    assert any(fragment in m for m in messages), messages
    assert fake_slack.messages("CINBOX") == []
    assert any(fragment in p for p in validate_message_blocks(blocks))


def test_blocks_sent_as_a_form_encoded_json_string_are_parsed(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    blocks = [section("from a form post")]
    resp = client.api_call(
        "chat.postMessage", params={"channel": "CINBOX", "text": "t", "blocks": json.dumps(blocks)}
    )
    message = fake_slack.message("CINBOX", resp["ts"])
    assert message is not None and message["blocks"] == blocks
    with pytest.raises(SlackApiError) as exc:
        client.api_call("chat.postMessage", params={"channel": "CINBOX", "blocks": "[not json"})
    assert api_error(exc) == "invalid_blocks_format"


def test_chat_update_validates_too(fake_slack: FakeSlack, client: WebClient) -> None:
    ts = client.chat_postMessage(channel="CINBOX", text="t")["ts"]
    with pytest.raises(SlackApiError) as exc:
        client.chat_update(channel="CINBOX", ts=ts, blocks=[section("x" * 3001)])
    assert api_error(exc) == "invalid_blocks"
    assert fake_slack.message("CINBOX", ts)["text"] == "t"  # type: ignore[index]


@pytest.mark.parametrize(
    ("view", "fragment"),
    [
        (modal(title={"type": "plain_text", "text": "t" * 25}), "/view/title/text"),
        (modal(submit={"type": "plain_text", "text": "s" * 25}), "/view/submit/text"),
        (modal(close={"type": "plain_text", "text": "c" * 25}), "/view/close/text"),
        (modal(title={"type": "mrkdwn", "text": "t"}), "plain_text"),
        (modal(private_metadata="m" * 3001), "/view/private_metadata"),
        (modal([section(str(i)) for i in range(101)]), "no more than 100 items"),
        (modal(callback_id="c" * 256), "/view/callback_id"),
        (
            {
                **modal(
                    [
                        {
                            "type": "input",
                            "label": {"type": "plain_text", "text": "x"},
                            "element": {"type": "plain_text_input", "action_id": "a"},
                        }
                    ]
                ),
                "submit": None,
            },
            "submit is required",
        ),
        (
            modal(
                [
                    {
                        "type": "input",
                        "label": {"type": "plain_text", "text": "x"},
                        "element": {"type": "button", "text": {"type": "plain_text", "text": "b"}},
                    }
                ]
            ),
            "unsupported element type",
        ),
        (
            modal(
                [
                    {
                        "type": "input",
                        "label": {"type": "plain_text", "text": "x"},
                        "element": {"type": "plain_text_input", "max_length": 3001},
                    }
                ]
            ),
            "max_length",
        ),
    ],
)
def test_invalid_views_are_rejected(
    fake_slack: FakeSlack, client: WebClient, view: dict[str, Any], fragment: str
) -> None:
    view = {k: v for k, v in view.items() if v is not None}
    problems = validate_view(view)
    assert any(fragment in p for p in problems), problems
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=fake_slack.new_trigger_id(), view=view)
    assert api_error(exc) == "invalid_arguments"
    assert any(fragment in m for m in exc.value.response["response_metadata"]["messages"])
    assert fake_slack.views == {}


def test_view_too_large(fake_slack: FakeSlack, client: WebClient) -> None:
    big = modal([section("x" * 2999, f"b{i}") for i in range(90)])
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=fake_slack.new_trigger_id(), view=big)
    assert api_error(exc) == "view_too_large"


# -- faults -----------------------------------------------------------------------


def test_rate_limit_is_retried_by_the_sdk_handler(fake_slack: FakeSlack) -> None:
    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    fake_slack.fail_next("chat.postMessage", status=429, retry_after=0)
    resp = client.chat_postMessage(channel="CINBOX", text="after the 429")
    calls = fake_slack.calls_to("chat.postMessage")
    assert [(c.status, c.ok) for c in calls] == [(429, False), (200, True)]
    assert calls[0].error == "ratelimited"
    assert [m["ts"] for m in fake_slack.messages("CINBOX")] == [resp["ts"]]


def test_rate_limit_without_handler_surfaces_retry_after(
    fake_slack: FakeSlack, client: WebClient
) -> None:
    fake_slack.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="CINBOX", text="x")
    assert exc.value.response.status_code == 429
    assert exc.value.response.headers["Retry-After"] == "7"
    assert api_error(exc) == "ratelimited"
    client.chat_postMessage(channel="CINBOX", text="x")  # the fault was used up


def test_server_errors_and_error_faults(fake_slack: FakeSlack) -> None:
    client = WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url)
    fake_slack.fail_next("chat.postMessage", status=503)
    with pytest.raises(SlackApiError) as exc:
        client.chat_postMessage(channel="CINBOX", text="x")
    assert exc.value.response.status_code == 503
    assert "non-JSON" in api_error(exc)  # the HTML body of a Slack outage
    assert fake_slack.calls_to("chat.postMessage")[-1].status == 503

    client.retry_handlers.append(
        ServerErrorRetryHandler(
            max_retry_count=2, interval_calculator=FixedValueRetryIntervalCalculator(0.01)
        )
    )
    fake_slack.fail_next("chat.postMessage", status=500, json_body=True, times=2)
    client.chat_postMessage(channel="CINBOX", text="third time lucky")
    assert [c.status for c in fake_slack.calls_to("chat.postMessage")][-3:] == [500, 500, 200]

    fake_slack.fail_next("*", error="invalid_auth")
    with pytest.raises(SlackApiError) as exc:
        client.users_info(user="UADMIN")
    assert api_error(exc) == "invalid_auth"
    assert client.users_info(user="UADMIN")["ok"]


def test_wait_for_sees_calls_from_other_threads(fake_slack: FakeSlack, client: WebClient) -> None:
    def later() -> None:
        for i in range(3):
            client.chat_postMessage(channel="CINBOX", text=str(i))

    threading.Thread(target=later).start()
    calls = fake_slack.wait_for("chat.postMessage", count=3, timeout=5)
    assert [c.args["text"] for c in calls] == ["0", "1", "2"]
    with pytest.raises(AssertionError, match=r"users\.info"):
        fake_slack.wait_for("users.info", timeout=0.2)
    fake_slack.reset_calls()
    assert fake_slack.calls == []


# -- views ------------------------------------------------------------------------


def test_trigger_ids_are_single_use_and_expire(fake_slack: FakeSlack, client: WebClient) -> None:
    trigger = fake_slack.new_trigger_id(user_id="UMEMBER")
    view = client.views_open(trigger_id=trigger, view=modal())["view"]
    assert view["id"] and view["hash"] and view["root_view_id"] == view["id"]

    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=trigger, view=modal())
    assert api_error(exc) == "exchanged_trigger_id"

    stale = fake_slack.new_trigger_id()
    fake_slack.expire_trigger_id(stale)
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=stale, view=modal())
    assert api_error(exc) == "expired_trigger_id"

    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id="12345.98765.abcd", view=modal())
    assert api_error(exc) == "invalid_trigger_id"
    assert len(fake_slack.views) == 1


def test_trigger_expires_after_its_lifetime(fake_slack: FakeSlack, client: WebClient) -> None:
    now = [1000.0]
    fake_slack.ws.clock = lambda: now[0]
    trigger = fake_slack.new_trigger_id()
    now[0] += 3.01
    with pytest.raises(SlackApiError) as exc:
        client.views_open(trigger_id=trigger, view=modal())
    assert api_error(exc) == "expired_trigger_id"


def test_views_update_hash_and_external_id(fake_slack: FakeSlack, client: WebClient) -> None:
    v1 = client.views_open(trigger_id=fake_slack.new_trigger_id(), view=modal(external_id="ext-1"))[
        "view"
    ]
    v2 = client.views_update(view_id=v1["id"], hash=v1["hash"], view=modal([section("two")]))[
        "view"
    ]
    assert v2["id"] == v1["id"] and v2["hash"] != v1["hash"]

    with pytest.raises(SlackApiError) as exc:
        client.views_update(view_id=v1["id"], hash=v1["hash"], view=modal([section("stale")]))
    assert api_error(exc) == "hash_conflict"
    stored = fake_slack.view(v1["id"])
    assert stored is not None and stored["blocks"] == [section("two")]

    client.views_update(external_id="ext-1", view=modal([section("three")], external_id="ext-1"))
    assert fake_slack.view(v1["id"])["blocks"] == [section("three")]  # type: ignore[index]
    with pytest.raises(SlackApiError) as exc:
        client.views_update(view_id="VNOPE", view=modal())
    assert api_error(exc) == "not_found"


def test_push_limit(fake_slack: FakeSlack, client: WebClient) -> None:
    root = client.views_open(trigger_id=fake_slack.new_trigger_id(user_id="UMEMBER"), view=modal())[
        "view"
    ]
    top = root
    for _ in range(2):
        top = client.views_push(
            trigger_id=fake_slack.new_trigger_id(user_id="UMEMBER", view_id=top["id"]), view=modal()
        )["view"]
        assert top["root_view_id"] == root["id"]
    with pytest.raises(SlackApiError) as exc:
        client.views_push(
            trigger_id=fake_slack.new_trigger_id(user_id="UMEMBER", view_id=top["id"]), view=modal()
        )
    assert api_error(exc) == "push_limit_reached"
    assert len(fake_slack.modal_stack("UMEMBER")) == 3


def test_home_tab_publish_and_hash(fake_slack: FakeSlack, client: WebClient) -> None:
    home = {"type": "home", "blocks": [section("Accounts")]}
    first = client.views_publish(user_id="UADMIN", view=home)["view"]
    second = client.views_publish(user_id="UADMIN", view=home, hash=first["hash"])["view"]
    assert second["id"] == first["id"] and second["hash"] != first["hash"]
    with pytest.raises(SlackApiError) as exc:
        client.views_publish(user_id="UADMIN", view=home, hash=first["hash"])
    assert api_error(exc) == "hash_conflict"
    with pytest.raises(SlackApiError) as exc:
        client.views_publish(
            user_id="UADMIN", view={"type": "home", "blocks": [section("x")] * 101}
        )
    assert api_error(exc) == "invalid_arguments"
    assert fake_slack.home("UADMIN")["blocks"] == [section("Accounts")]  # type: ignore[index]
    assert fake_slack.home("UMEMBER") is None


# -- files ------------------------------------------------------------------------


def test_files_upload_v2_into_a_thread(fake_slack: FakeSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="CINBOX", text="mail")["ts"]
    content = b"%PDF-1.4 fake invoice\x00\xff"
    resp = client.files_upload_v2(
        channel="CINBOX",
        thread_ts=parent,
        content=content,
        filename="invoice.pdf",
        title="Invoice",
        initial_comment="attached",
    )
    file_id = resp["file"]["id"]
    assert fake_slack.file_content(file_id) == content
    info = client.files_info(file=file_id)["file"]
    assert info["title"] == "Invoice" and info["size"] == len(content)
    assert info["shares"]["public"]["CINBOX"][0]["thread_ts"] == parent
    replies = fake_slack.thread("CINBOX", parent)
    assert [(r["text"], [f["id"] for f in r["files"]]) for r in replies] == [
        ("attached", [file_id])
    ]
    assert [c.method for c in fake_slack.calls][-3:] == [
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
        "files.info",
    ]


def test_file_download_needs_the_bot_token(fake_slack: FakeSlack) -> None:
    f = fake_slack.add_file("note.txt", b"hello attachment", "text/plain")
    req = urllib.request.Request(
        f["url_private_download"], headers={"Authorization": f"Bearer {fake_slack.bot_token}"}
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.read() == b"hello attachment"
        assert resp.headers["Content-Type"] == "text/plain"
    # Without auth Slack serves its login page, not the file.
    with urllib.request.urlopen(f["url_private_download"]) as resp:
        assert resp.headers["Content-Type"].startswith("text/html")
        assert b"hello attachment" not in resp.read()


def test_complete_upload_of_an_unknown_file(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as exc:
        client.files_completeUploadExternal(
            files=[{"id": "FNOPE", "title": "x"}], channel_id="CINBOX"
        )
    assert api_error(exc) == "file_not_found"


# -- a Bolt app behind real HTTP, driven by signed requests -----------------------


@pytest.fixture
def bolt(
    fake_slack: FakeSlack, slack_signing_secret: str
) -> Iterator[tuple[App, SlackDriver, list[str]]]:
    seen: list[str] = []
    app = App(
        signing_secret=slack_signing_secret,
        client=WebClient(token=fake_slack.bot_token, base_url=fake_slack.api_url),
    )

    @app.event("app_mention")
    def on_mention(event: dict[str, Any], client: WebClient) -> None:
        seen.append(event["text"])
        client.chat_postMessage(channel=event["channel"], thread_ts=event["ts"], text="on it")

    @app.command("/inbox")
    def on_inbox(ack: Ack, respond: Respond, command: dict[str, Any]) -> None:
        ack()
        seen.append(f"command:{command['text']}")
        respond(text=f"searching for {command['text']}")

    @app.action("reply")
    def on_reply(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(
            trigger_id=body["trigger_id"],
            view=modal(
                [
                    {
                        "type": "input",
                        "block_id": "body",
                        "label": {"type": "plain_text", "text": "Reply"},
                        "element": {"type": "plain_text_input", "action_id": "text"},
                    }
                ],
                private_metadata=body["actions"][0]["value"],
            ),
        )

    @app.view("reply")
    def on_submit(ack: Ack, view: dict[str, Any]) -> None:
        text = view["state"]["values"]["body"]["text"]["value"]
        if not text.strip():
            ack(response_action="errors", errors={"body": "Write something"})
            return
        seen.append(f"sent:{view['private_metadata']}:{text}")
        ack()

    with serve_wsgi(bolt_wsgi(app)) as url:
        yield app, SlackDriver(url, slack_signing_secret, fake_slack), seen


def mention(ts: str) -> dict[str, Any]:
    return {
        "type": "app_mention",
        "user": "UMEMBER",
        "text": "<@UBOT> hi",
        "ts": ts,
        "channel": "CINBOX",
    }


def test_signed_event_reaches_the_listener(
    fake_slack: FakeSlack, bolt: tuple[App, SlackDriver, list[str]]
) -> None:
    _, driver, seen = bolt
    msg = fake_slack.add_message("CINBOX", "UMEMBER", "<@UBOT> hi")
    status, _, _ = driver.event(mention(msg["ts"]))
    assert status == 200
    fake_slack.wait_for("chat.postMessage")
    assert seen == ["<@UBOT> hi"]
    assert [r["text"] for r in fake_slack.thread("CINBOX", msg["ts"])] == ["on it"]


@pytest.mark.parametrize(("bad_signature", "stale"), [(True, False), (False, True)])
def test_bad_or_stale_signature_gets_401_and_no_listener_runs(
    fake_slack: FakeSlack,
    bolt: tuple[App, SlackDriver, list[str]],
    bad_signature: bool,
    stale: bool,
) -> None:
    _, driver, seen = bolt
    fake_slack.reset_calls()
    resp = driver.event(mention("1700000000.000100"), bad_signature=bad_signature, stale=stale)
    assert resp.status == 401
    resp = driver.command(text="x", bad_signature=bad_signature, stale=stale)
    assert resp.status == 401
    # A correctly signed request right after proves the server is alive and listeners work.
    assert driver.command(text="ok").status == 200
    fake_slack.wait_until(lambda: bool(fake_slack.responses))
    assert seen == ["command:ok"]
    assert fake_slack.calls_to("chat.postMessage") == []


def test_command_respond_goes_to_the_response_url(
    fake_slack: FakeSlack, bolt: tuple[App, SlackDriver, list[str]]
) -> None:
    _, driver, _ = bolt
    assert driver.command("/inbox", text="invoices", user_id="UADMIN").status == 200
    fake_slack.wait_until(lambda: len(fake_slack.responses) == 1)
    post = fake_slack.responses[0]
    assert post.body["text"] == "searching for invoices"
    assert (post.channel_id, post.user_id) == ("CINBOX", "UADMIN")
    assert fake_slack.ephemerals[-1]["text"] == "searching for invoices"


def test_button_opens_modal_and_submission_closes_or_reports_errors(
    fake_slack: FakeSlack, bolt: tuple[App, SlackDriver, list[str]], client: WebClient
) -> None:
    _, driver, seen = bolt
    button = {
        "type": "button",
        "action_id": "reply",
        "text": {"type": "plain_text", "text": "Reply"},
        "value": "thread-7",
    }
    ts = client.chat_postMessage(
        channel="CINBOX",
        text="mail",
        blocks=[{"type": "actions", "block_id": "acts", "elements": [button]}],
    )["ts"]

    with pytest.raises(LookupError):
        driver.block_action("UMEMBER", "no_such_button", channel_id="CINBOX", message_ts=ts)
    assert driver.block_action("UMEMBER", "reply", channel_id="CINBOX", message_ts=ts).status == 200
    fake_slack.wait_for("views.open")
    stack = fake_slack.modal_stack("UMEMBER")
    assert len(stack) == 1 and stack[0]["private_metadata"] == "thread-7"

    resp = driver.view_submission("UMEMBER", stack[0]["id"], {"body": {"text": "   "}})
    assert resp.json() == {"response_action": "errors", "errors": {"body": "Write something"}}
    assert len(fake_slack.modal_stack("UMEMBER")) == 1 and fake_slack.ack_problems == []

    resp = driver.view_submission("UMEMBER", stack[0]["id"], {"body": {"text": "Thanks!"}})
    assert resp.status == 200 and resp.body == ""
    assert seen == ["sent:thread-7:Thanks!"]
    assert fake_slack.modal_stack("UMEMBER") == []
    with pytest.raises(LookupError):
        driver.view_submission("UMEMBER", stack[0]["id"], {"nope": {"text": "x"}})


def test_options_load_and_shortcut(
    fake_slack: FakeSlack, bolt: tuple[App, SlackDriver, list[str]]
) -> None:
    app, driver, seen = bolt

    @app.options("client")
    def load(ack: Ack, payload: dict[str, Any]) -> None:
        ack(
            options=[
                {"text": {"type": "plain_text", "text": f"{payload['value']} Ltd"}, "value": "c1"}
            ]
        )

    @app.shortcut("new_mail")
    def compose(ack: Ack, shortcut: dict[str, Any], client: WebClient) -> None:
        ack()
        client.views_open(trigger_id=shortcut["trigger_id"], view=modal())
        seen.append("shortcut")

    resp = driver.block_suggestion("UMEMBER", "client", "acme")
    assert resp.json()["options"][0]["text"]["text"] == "acme Ltd"
    assert fake_slack.ack_problems == []
    assert driver.shortcut("new_mail", "UMEMBER").status == 200
    fake_slack.wait_for("views.open")
    assert fake_slack.calls_to("views.open")[0].ok
    assert seen == ["shortcut"]


def test_upload_url_rejects_unknown_ids(fake_slack: FakeSlack) -> None:
    req = urllib.request.Request(f"{fake_slack.base_url}upload/FNOPE", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req)
    assert exc.value.code == 404
