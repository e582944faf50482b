"""Submitting the Assign and Snooze-until modals; validation errors show in the modal.

Checks (reads and Slack calls) run before the ack, the write after it (bot/handlers/after_ack.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, BoltContext
from slack_sdk import WebClient

from bot.access import AccessDenied
from bot.blocks import triage as tb
from bot.blocks.email_modal import notice_modal
from bot.blocks.state import state_values
from bot.handlers.actions.conversation import REFUSAL
from bot.handlers.after_ack import write_after_ack
from bot.handlers.middleware import services_of
from bot.inbox import actions, triage
from bot.store.models import utcnow


def register(app: Any) -> None:
    app.view(tb.VIEW_ASSIGN)(assign_submitted)
    app.view(tb.VIEW_SNOOZE)(snooze_submitted)


def _picked(values: dict[str, Any], block: str, action: str) -> Any:
    """The chosen value of a select, datepicker or timepicker."""
    state = (values.get(block) or {}).get(action) or {}
    option = state.get("selected_option") or {}
    return option.get("value") or state.get("selected_date") or state.get("selected_time")


def _refused(ack: Ack, check: Callable[[], object]) -> bool:
    """Run the read-only check; when the person may not act on the conversation (or it is
    gone), answer in the modal and say so."""
    try:
        check()
    except AccessDenied:
        ack(response_action="update", view=notice_modal("Not allowed", REFUSAL))
        return True
    except actions.NotFound:
        ack(response_action="update", view=notice_modal("Not found", "This conversation is gone."))
        return True
    return False


def assign_submitted(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    view = body["view"]
    meta = tb.parse_meta(view.get("private_metadata"))
    if meta is None:
        ack(response_action="update", view=notice_modal("Assign", "This form is out of date."))
        return
    picked = _picked(state_values(view), tb.ASSIGN_BLOCK, tb.ASSIGN_SELECT)
    assignee = str(picked or "") or None
    if assignee == tb.NOBODY:
        assignee = None
    services, actor = services_of(context), body["user"]["id"]
    try:  # reads only: the write follows the ack
        refused = _refused(
            ack, lambda: triage.check_assign(services, client, actor, meta[0], assignee)
        )
    except triage.NotMember as exc:
        ack(response_action="errors", errors={tb.ASSIGN_BLOCK: str(exc)})
        return
    if refused:
        return
    ack()  # the write follows: a busy database never delays the ack
    write_after_ack(
        client,
        actor,
        lambda: triage.assign(services, client, actor, meta[0], assignee),
        failed="The owner was not changed:",
        expected=(triage.NotMember, AccessDenied, actions.NotFound),
    )


def snooze_submitted(
    ack: Ack, body: dict[str, Any], client: WebClient, context: BoltContext
) -> None:
    view = body["view"]
    meta = tb.parse_meta(view.get("private_metadata"))
    if meta is None:
        ack(response_action="update", view=notice_modal("Snooze", "This form is out of date."))
        return
    values = state_values(view)
    day = _picked(values, tb.SNOOZE_DATE_BLOCK, tb.SNOOZE_DATE)
    clock = _picked(values, tb.SNOOZE_TIME_BLOCK, tb.SNOOZE_TIME)
    user_id = body["user"]["id"]
    if not day or not clock:
        ack(response_action="errors", errors={tb.SNOOZE_DATE_BLOCK: "Pick a day and a time."})
        return
    until = triage.local_time(str(day), str(clock), triage.user_zone(client, user_id))
    if until <= utcnow():
        ack(response_action="errors", errors={tb.SNOOZE_TIME_BLOCK: "Pick a time in the future."})
        return
    services = services_of(context)
    # Reads only: the write follows the ack.
    if _refused(ack, lambda: actions.conversation_info(services, client, user_id, meta[0])):
        return
    ack()  # the write follows: a busy database never delays the ack
    write_after_ack(
        client,
        user_id,
        lambda: triage.snooze(services, client, user_id, meta[0], until),
        failed="The conversation was not snoozed:",
        expected=(AccessDenied, actions.NotFound),
    )
