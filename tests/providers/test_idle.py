"""IDLE: idle_wait and IdleWatcher wake up on real deliveries."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from bot.providers.errors import AuthError, ProviderError
from bot.providers.idle import IdleWatcher
from bot.providers.imap import ImapProvider
from bot.providers.types import ImapSettings
from tests.mailservers.dovecot import DovecotServer, MailUser
from tests.providers.messages import make_message

pytestmark = pytest.mark.dovecot

GENEROUS = 30.0  # seconds; only bounds a hang, never asserts speed


@pytest.fixture
def imap(imap_settings: ImapSettings, imap_user: MailUser) -> Iterator[ImapProvider]:
    with ImapProvider(imap_settings, imap_user.password) as provider:
        yield provider


def test_idle_wait_returns_false_when_nothing_happens(imap: ImapProvider) -> None:
    assert imap.idle_wait("INBOX", 0.3) is False
    # The connection is still usable after IDLE ends.
    assert imap.select("INBOX").exists == 0


def test_idle_wait_wakes_on_delivery(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    imap.select("INBOX")
    timer = threading.Timer(
        0.5, dovecot.deliver, args=(imap_user.username, make_message("ping")[0])
    )
    timer.start()
    try:
        assert imap.idle_wait("INBOX", GENEROUS) is True
    finally:
        timer.join()
    assert [m.uid for b in imap.fetch_new("INBOX", 0) for m in b] == [1]


def test_idle_wait_reports_mail_that_arrived_before_idle(
    imap: ImapProvider, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    imap.select("INBOX")
    dovecot.deliver(imap_user.username, make_message("early")[0])
    assert imap.idle_wait("INBOX", GENEROUS) is True


def test_idle_wait_can_be_interrupted(imap: ImapProvider) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    assert imap.idle_wait("INBOX", GENEROUS, interrupt=stop.is_set, poll_seconds=0.1) is False
    assert stop.is_set()


def test_watcher_calls_back_on_delivery_and_stops(
    imap_settings: ImapSettings, dovecot: DovecotServer, imap_user: MailUser
) -> None:
    connected = threading.Event()
    changed = threading.Event()
    calls: list[int] = []

    def on_change() -> None:
        calls.append(1)
        if len(calls) == 1:
            connected.set()  # the first call follows the connect
        else:
            changed.set()

    watcher = IdleWatcher(imap_settings, imap_user.password, "INBOX", on_change, poll_seconds=0.1)
    watcher.start()
    try:
        assert connected.wait(GENEROUS)
        dovecot.deliver(imap_user.username, make_message("wake up")[0])
        assert changed.wait(GENEROUS)
    finally:
        watcher.stop()
    assert not watcher.running
    assert watcher.errors == 0


def test_watcher_reports_errors_and_keeps_retrying(
    imap_settings: ImapSettings, imap_user: MailUser
) -> None:
    errors: list[ProviderError] = []
    two_errors = threading.Event()

    def on_error(exc: ProviderError) -> None:
        errors.append(exc)
        if len(errors) >= 2:
            two_errors.set()

    watcher = IdleWatcher(
        replace(imap_settings, username=imap_user.username),
        "wrong-password",
        "INBOX",
        lambda: None,
        on_error=on_error,
        backoff_initial=0.05,
        backoff_max=0.1,
    )
    watcher.start()
    try:
        assert two_errors.wait(GENEROUS)
    finally:
        watcher.stop()
    assert not watcher.running
    assert all(isinstance(e, AuthError) for e in errors)
