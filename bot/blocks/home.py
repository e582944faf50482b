"""The App Home tab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.blocks import ids
from bot.blocks.text import escape_mrkdwn, plain

STATUS_LABELS = {
    "active": ":large_green_circle: Active",
    "error": ":red_circle: Error",
    "needs_reauth": ":warning: Needs re-authorisation",
    "paused": ":double_vertical_bar: Paused",
}


@dataclass(frozen=True)
class AccountSummary:
    id: int
    email: str
    provider: str
    channel_id: str | None
    status: str
    last_error: str | None = None


def home_view(*, accounts: list[AccountSummary], is_admin: bool) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("Mailroom")},
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "Your team's shared inbox, in Slack. Every email conversation is a "
                "thread in its account's channel.",
            },
        },
    ]
    if accounts:
        lines = []
        for acc in accounts:
            channel = f"<#{acc.channel_id}>" if acc.channel_id else "_no channel_"
            lines.append(
                f"• *{escape_mrkdwn(acc.email)}* ({acc.provider}) → {channel} · "
                f"{STATUS_LABELS.get(acc.status, acc.status)}"
            )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    else:
        text = "No email account is connected yet."
        if not is_admin:
            text += " Ask a Mailroom admin to add one."
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if is_admin:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ids.HOME_ADD_ACCOUNT,
                        "text": plain("Add email account"),
                        "style": "primary",
                    }
                ],
            }
        )
    return {"type": "home", "blocks": blocks}
