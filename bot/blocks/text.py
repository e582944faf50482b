"""Making untrusted text safe and sized for Slack."""

from __future__ import annotations

SECTION_LIMIT = 3000


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack treats as control in mrkdwn.

    Without this an email could ping `<!channel>` or show a fake `<https://evil|bank>` link.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int, marker: str = "…") -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(marker))] + marker


def plain(text: str, limit: int = 3000) -> dict[str, object]:
    return {"type": "plain_text", "text": truncate(text or " ", limit), "emoji": True}


def mrkdwn(text: str, limit: int = SECTION_LIMIT) -> dict[str, object]:
    return {"type": "mrkdwn", "text": truncate(text or " ", limit), "verbatim": True}
