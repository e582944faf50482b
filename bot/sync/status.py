"""Account health after each run: Active / Error (with text) / Needs re-authorisation.

* Success: status back to Active, failures reset, next run one interval away.
* AuthError: Needs re-authorisation at once (the password will not fix itself); the
  scheduler stops claiming the account until its credentials are checked again.
* Any other error (timeouts, refused connections, server errors): exponential backoff,
  ``min(interval * 2**n, 1 h)``; the account shows Error after ``ERROR_AFTER`` failures
  in a row so one blip does not page anyone (chatwoot #4532 disabled inboxes on timeouts).
* Admins get one Slack DM per transition into Error / Needs re-authorisation, and one
  when it recovers, never one per run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.blocks.text import escape_mrkdwn, truncate
from bot.providers.errors import AuthError
from bot.store.models import Account, AccountStatus, Provider, utcnow

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600
ERROR_AFTER = 2  # transient failures in a row before the account shows Error


def backoff_seconds(interval: int, failures: int) -> int:
    """Delay before the next try after ``failures`` failures in a row."""
    if failures <= 0:
        return interval
    return int(min(interval * 2 ** min(failures, 20), MAX_BACKOFF_SECONDS))


def error_text(exc: BaseException) -> str:
    """A one-line, person-facing reason (provider errors already say what to do)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or type(exc).__name__


def record_success(
    session: Session,
    account: Account,
    *,
    admins: Iterable[str] = (),
    now: datetime | None = None,
) -> None:
    now = now or utcnow()
    previous = account.status
    account.status = AccountStatus.ACTIVE
    account.last_error = None
    account.consecutive_failures = 0
    account.last_sync_at = now
    account.last_success_at = now
    from bot.store.push import poll_interval  # API accounts without push: every 60 s at most

    account.next_sync_at = now + timedelta(seconds=poll_interval(session, account, now))
    if previous in (AccountStatus.ERROR, AccountStatus.NEEDS_REAUTH):
        _alert(
            session,
            account,
            admins,
            f":white_check_mark: Mail sync for {escape_mrkdwn(account.email)} works again.",
        )


def record_failure(
    session: Session,
    account: Account,
    exc: BaseException,
    *,
    admins: Iterable[str] = (),
    now: datetime | None = None,
) -> AccountStatus:
    """Count the failure, schedule the retry, switch status (and alert) when it changes."""
    now = now or utcnow()
    account.consecutive_failures = (account.consecutive_failures or 0) + 1
    account.last_sync_at = now
    account.last_error = error_text(exc)
    account.next_sync_at = now + timedelta(
        seconds=backoff_seconds(account.sync_interval_seconds, account.consecutive_failures)
    )
    if isinstance(exc, AuthError):
        new = AccountStatus.NEEDS_REAUTH
    elif account.consecutive_failures >= ERROR_AFTER or account.status == AccountStatus.ERROR:
        new = AccountStatus.ERROR
    else:
        new = account.status
    if new != account.status and new in (AccountStatus.ERROR, AccountStatus.NEEDS_REAUTH):
        if new == AccountStatus.NEEDS_REAUTH:
            what = (
                "needs re-authorisation: App Home → the account's menu → Reconnect…"
                if account.provider != Provider.IMAP
                else "needs its password re-entered: App Home → the account's menu → "
                "Reconnect… (or `mailroom accounts set-password`)"
            )
        else:
            what = "is failing; retrying with backoff"
        _alert(
            session,
            account,
            admins,
            # The error is the mail server's or provider's words: escaped, so it cannot ping
            # <!channel> or show a disguised link in an admin's DM (security review #20).
            f":warning: Mail sync for {escape_mrkdwn(account.email)} {what}: "
            f"{escape_mrkdwn(truncate(account.last_error or '', 2000))}",
        )
    account.status = new
    return new


def reactivate(session: Session, account: Account, *, now: datetime | None = None) -> None:
    """Credentials checked and fine again: sync now."""
    now = now or utcnow()
    account.status = AccountStatus.ACTIVE
    account.consecutive_failures = 0
    account.last_error = None
    account.next_sync_at = now


def _alert(session: Session, account: Account, admins: Iterable[str], text: str) -> None:
    """One "slack.dm" per admin, keyed by the transition so a retried run adds nothing."""
    from bot.store.outbox import enqueue

    admins = frozenset(admins)
    if not admins:
        log.warning(
            "no admins configured (MAILROOM_ADMINS): sync alert for %s not sent", account.email
        )
        return
    # consecutive_failures + last_sync_at identify this transition uniquely.
    stamp = (account.last_sync_at or utcnow()).strftime("%Y%m%dT%H%M%S%f")
    for user in sorted(admins):
        enqueue(
            session,
            kind="slack.dm",
            key=f"sync-alert:{account.id}:{stamp}:{user}",
            payload={"user_id": user, "text": text},
            account_id=account.id,
        )
