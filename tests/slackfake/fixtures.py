"""pytest fixtures for the Slack harness (register with ``pytest_plugins``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import FakeSlack

SIGNING_SECRET = "fake-signing-secret-0123456789abcdef"


def seeded_fake() -> FakeSlack:
    """A started FakeSlack with the standard cast.

    UBOT (the app's bot user), UADMIN (workspace admin), UMEMBER (in #inbox),
    UOUTSIDER (not in #inbox); channel CINBOX "inbox" with UBOT, UADMIN, UMEMBER.
    """
    fake = FakeSlack(bot_user_id="UBOT").start()
    fake.add_user("UADMIN", "ada.admin", is_admin=True, email="ada@example.com")
    fake.add_user("UMEMBER", "max.member", email="max@example.com")
    fake.add_user("UOUTSIDER", "olga.outsider", email="olga@example.com")
    fake.add_channel("CINBOX", "inbox", ["UBOT", "UADMIN", "UMEMBER"])
    return fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = seeded_fake()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def slack_signing_secret() -> str:
    return SIGNING_SECRET
