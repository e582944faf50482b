"""pytest plugin: real Dovecot IMAP and aiosmtpd SMTP servers on loopback.

Fixtures:

* ``mail_tls`` (session): self-signed cert/key; ``.ca_path`` is the CA to trust.
* ``dovecot_server`` (session): full-featured Dovecot (MOVE, CONDSTORE, QRESYNC,
  SPECIAL-USE, IDLE) with plain/STARTTLS on ``.port`` and SSL on ``.ssl_port``.
* ``dovecot_reduced`` (session): Dovecot advertising no MOVE/CONDSTORE/QRESYNC/SPECIAL-USE,
  with Microsoft-style folder names ("Sent Items", "Deleted Items", "Junk E-mail").
* ``dovecot`` (function): the full server; call ``dovecot.new_user()`` for a fresh mailbox.
* ``imap_user`` (function): a fresh :class:`MailUser` on ``dovecot_server``.
* ``imap_settings`` (function): plain-IMAP :class:`ImapSettings` for ``imap_user``.
* ``smtp_server`` (session): SMTP that delivers local recipients into Dovecot.
* ``smtp_relay`` (session): the same without AUTH (an internal smarthost).

Without Dovecot installed the fixtures skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.providers.types import ImapSettings, Security
from tests.mailservers.dovecot import (
    NAME_ONLY_MAILBOXES,
    REDUCED_CAPABILITY,
    DovecotServer,
    MailUser,
    find_dovecot,
    start_dovecot,
)
from tests.mailservers.smtp_server import SmtpServer
from tests.mailservers.tls import TlsMaterial, make_self_signed


def _require_dovecot() -> None:
    if find_dovecot() is None:
        msg = (
            "dovecot is not installed (no `dovecot` on PATH or /usr/sbin/dovecot): "
            "`apt-get install dovecot-imapd` to run the IMAP/SMTP tests"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def imap_settings_for(
    server: DovecotServer,
    username: str,
    *,
    security: Security = "plain",
    timeout: float = 10.0,
) -> ImapSettings:
    """Settings that reach ``server`` as ``username`` with the given security."""
    if security == "ssl":
        if server.ssl_port is None:
            raise RuntimeError("this Dovecot was started without TLS")
        port = server.ssl_port
    else:
        port = server.port
    return ImapSettings(
        host=server.host,
        port=port,
        security=security,
        username=username,
        timeout=timeout,
        ca_file=str(server.tls.ca_path) if server.tls else None,
    )


@pytest.fixture(scope="session")
def mail_tls() -> TlsMaterial:
    return make_self_signed(Path(tempfile.mkdtemp(prefix="mailroom-tls-")))


@pytest.fixture(scope="session")
def dovecot_server(mail_tls: TlsMaterial) -> Iterator[DovecotServer]:
    _require_dovecot()
    server = start_dovecot(tls=mail_tls)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_reduced() -> Iterator[DovecotServer]:
    _require_dovecot()
    server = start_dovecot(capability=REDUCED_CAPABILITY, mailboxes=NAME_ONLY_MAILBOXES)
    yield server
    server.stop()


@pytest.fixture
def dovecot(dovecot_server: DovecotServer) -> DovecotServer:
    return dovecot_server


@pytest.fixture
def imap_user(dovecot_server: DovecotServer) -> MailUser:
    username, _password = dovecot_server.new_user()
    return dovecot_server.user(username)


@pytest.fixture
def imap_settings(dovecot_server: DovecotServer, imap_user: MailUser) -> ImapSettings:
    return imap_settings_for(dovecot_server, imap_user.username)


@pytest.fixture(scope="session")
def smtp_server(dovecot_server: DovecotServer, mail_tls: TlsMaterial) -> Iterator[SmtpServer]:
    server = SmtpServer(dovecot_server, mail_tls)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def smtp_relay(dovecot_server: DovecotServer) -> Iterator[SmtpServer]:
    """An internal relay: no AUTH offered, delivers into Dovecot like ``smtp_server``."""
    server = SmtpServer(dovecot_server, None, require_auth=False)
    server.start()
    yield server
    server.stop()


def pytest_configure(config: pytest.Config) -> None:
    # The SMTP fixture requires AUTH without TLS on purpose (loopback only).
    config.addinivalue_line(
        "filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning"
    )
