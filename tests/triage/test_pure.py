"""The pure parts: wake-up times in a person's zone, /inbox assign parsing, and every parent
and modal variant passing the fake Slack's Block Kit checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.blocks import triage as tb
from bot.blocks.conversation import ConversationCard, Person, parent_message
from bot.handlers.commands.parse import parse_command
from bot.inbox.triage import local_time, snooze_until
from tests.slackfake import validate_message, validate_view

# A Sunday, 23:30 in New York (already Monday 04:30 UTC).
NOW = datetime(2026, 3, 9, 3, 30, tzinfo=UTC)
NY = ZoneInfo("America/New_York")


def test_snooze_choices_follow_the_clickers_clock() -> None:
    assert snooze_until(tb.LATER_TODAY, NOW, NY) == NOW + timedelta(hours=3)
    tomorrow = snooze_until(tb.TOMORROW, NOW, NY).astimezone(NY)
    assert (tomorrow.date().isoformat(), tomorrow.hour) == ("2026-03-09", 9)
    week = snooze_until(tb.NEXT_WEEK, NOW, NY).astimezone(NY)
    assert (week.date().isoformat(), week.weekday(), week.hour) == ("2026-03-09", 0, 9)
    # In Tokyo it is already Monday afternoon: next week is the Monday after.
    tokyo = snooze_until(tb.NEXT_WEEK, NOW, ZoneInfo("Asia/Tokyo")).astimezone(
        ZoneInfo("Asia/Tokyo")
    )
    assert tokyo.date().isoformat() == "2026-03-16"
    with pytest.raises(ValueError):
        snooze_until("someday", NOW, NY)


def test_picked_time_is_read_in_the_persons_zone() -> None:
    assert local_time("2026-07-01", "14:30", NY) == datetime(2026, 7, 1, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("assign #42 <@U123ABC|ann>", ("#42", "id:U123ABC")),
        ("assign #42 <@U123ABC>", ("#42", "id:U123ABC")),
        ("assign 42 me", ("42", "me")),
        ("ASSIGN #42 nobody", ("#42", "nobody")),
        ("assign #42 @ann.lee", ("#42", "name:ann.lee")),
    ],
)
def test_assign_command_parses(text: str, args: tuple[str, str]) -> None:
    cmd = parse_command(text)
    assert (cmd.name, cmd.args, cmd.error) == ("assign", args, None)


def test_assign_without_a_person_is_explained() -> None:
    assert parse_command("assign #42").error is not None
    assert parse_command("list unanswered").args == ("unanswered",)


@pytest.mark.parametrize("status", ["open", "waiting", "done"])
@pytest.mark.parametrize("assignee", [None, "U1"])
@pytest.mark.parametrize("snoozed", [False, True])
def test_every_parent_variant_is_valid_block_kit(
    status: str, assignee: str | None, snoozed: bool
) -> None:
    state = tb.TriageState(
        7,
        status=status,
        assignee=assignee,
        waiting_since=NOW,
        snoozed_until=NOW if snoozed else None,
        replying_user="U2",
        names={"U1": "Ann Owner", "U2": "Rex Replier"},
    )
    card = ConversationCard(7, "team@ours.example", "Hi", Person("Bob", "bob@x"), triage=state)
    message = parent_message(card)
    assert validate_message(message) == (None, [])
    text = str(message["blocks"])
    # People by name, never a mention: the parent notifies nobody (issue 14, quiet).
    assert "<@" not in text
    assert ("Owner Ann Owner" in text) == (assignee is not None)
    assert "Rex Replier is replying" in text


def test_modals_are_valid() -> None:
    # Up to 99 people: the whole list (with Nobody, Slack's 100 options) as a static select.
    members = [(f"U{i}", f"Person {i}") for i in range(150)]
    view = tb.assign_modal(7, "Subject & <b>", members[:99], "U3", "C1")
    assert validate_view(view) == []
    select = view["blocks"][1]["element"]
    assert select["type"] == "static_select"
    assert len(select["options"]) == 100 and select["initial_option"]["value"] == "U3"
    # More: an external select (options loaded as the person types), none of them cut off.
    view = tb.assign_modal(7, "Subject & <b>", members, "U3", "C1")
    assert validate_view(view) == []
    select = view["blocks"][1]["element"]
    assert select["type"] == "external_select" and "options" not in select
    assert select["initial_option"] == tb.assignee_option("U3", "Person 3")
    # A current owner no longer in the channel is not shown as chosen.
    assert (
        "initial_option"
        not in tb.assign_modal(7, "S", members, "UGONE", "C1")["blocks"][1]["element"]
    )
    options = tb.assignee_options([(f"U{i}", f"P {i}") for i in range(150)])
    assert len(options) == tb.MAX_OPTIONS
    assert validate_view(tb.snooze_modal(7, "S", "Europe/London", "2026-12-05", None)) == []
    entries = [
        tb.HistoryEntry(NOW, "U1", "triage.assign", None, "U1"),
        tb.HistoryEntry(NOW, "system", "triage.wake", NOW.isoformat(), None, "mail"),
        tb.HistoryEntry(NOW, "U1", "conversation.archive"),
    ] * 12
    blocks = tb.history_blocks(entries, 10)
    assert 3 <= len(blocks) <= 10
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Email"}, "blocks": blocks}
    assert validate_view(modal) == []


def test_people_match_by_the_start_of_a_word_of_any_name() -> None:
    from bot.access import SlackUser
    from bot.inbox.triage import matching_people

    people = [
        SlackUser("U1", "ann.bell", "annie", "Ann Bell"),
        SlackUser("U2", "joanne", "", "Joanne Annan"),
        SlackUser("U3", "bob", "bobby", "Bob Stone"),
    ]

    def ids(query: str, limit: int = 10) -> list[str]:
        return [p.user_id for p in matching_people(people, query, limit)]

    assert ids("") == ["U1", "U2", "U3"]
    assert ids("ann") == ["U1", "U2"]  # "Annan" starts a word; "joANNe" does not count
    assert ids("ANN B") == ["U1"]
    assert ids("@bobby") == ["U3"]
    assert ids("annan") == ["U2"]
    assert ids("stone bob") == ["U3"]
    assert ids("nn") == []
    # A name that starts with the whole text comes before one with a later word matching.
    people.reverse()
    assert ids("ann") == ["U1", "U2"] and ids("") == ["U3", "U2", "U1"]
    assert ids("annan j") == ["U2"]
    assert ids("a", limit=1) == ["U1"]
