"""Who hears about an account falling into Error / Needs re-authorisation.

The sync engine's status module (bot/sync/status.py) already enqueues one "slack.dm" per
recipient per transition, idempotently keyed. What it needs from here is the recipient list:
the configured admins (MAILROOM_ADMINS) plus the admin who connected the account, so a
workspace admin who added an account through the App Home is told even when no admin is
configured by id (Slack workspace admins are not enumerable without users.list paging).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bot.store.models import Account

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")


def alert_recipients(configured_admins: Iterable[str], account: Account) -> frozenset[str]:
    """Slack user ids to DM about this account's sync health."""
    people = {a for a in configured_admins if a}
    if account.created_by and _SLACK_USER.match(account.created_by):
        people.add(account.created_by)  # "cli" and other non-user actors are skipped
    return frozenset(people)
