"""test_connection and connect() error translation, against real loopback servers."""

from __future__ import annotations

import logging
import socket
from dataclasses import replace

import pytest

from bot.providers.errors import AuthError, ConfigError, TlsError, TransientError
from bot.providers.imap import ImapProvider, test_connection
from bot.providers.types import ImapSettings
from tests.mailservers.dovecot import DovecotServer, MailUser, free_port
from tests.mailservers.fixtures import imap_settings_for

pytestmark = pytest.mark.dovecot


def test_ok_lists_folders_and_roles(imap_settings: ImapSettings, imap_user: MailUser) -> None:
    report = test_connection(imap_settings, imap_user.password, folders=["INBOX", "Sent"])
    assert report.ok, report.message
    assert {f.name for f in report.folders} >= {"INBOX", "Sent", "Archive"}
    assert "sent: 'Sent'" in report.message


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_ok_over_tls_with_the_servers_ca(
    dovecot: DovecotServer, imap_user: MailUser, security: str
) -> None:
    settings = imap_settings_for(dovecot, imap_user.username, security=security)  # type: ignore[arg-type]
    report = test_connection(settings, imap_user.password)
    assert report.ok, report.message
    with ImapProvider(settings, imap_user.password) as imap:
        assert imap.select("INBOX").exists == 0


def test_untrusted_certificate_is_a_tls_failure(
    dovecot: DovecotServer, imap_user: MailUser
) -> None:
    settings = replace(imap_settings_for(dovecot, imap_user.username, security="ssl"), ca_file=None)
    report = test_connection(settings, imap_user.password)
    assert not report.ok and report.step == "tls"
    assert "certificate" in report.message and "not trusted" in report.message
    with pytest.raises(TlsError):
        ImapProvider(settings, imap_user.password).connect()


def test_wrong_password_is_an_auth_error(imap_settings: ImapSettings, imap_user: MailUser) -> None:
    report = test_connection(imap_settings, "wrong-" + imap_user.password)
    assert not report.ok and report.step == "login"
    assert "rejected the username or password" in report.message
    assert imap_user.password not in report.message
    with pytest.raises(AuthError, match="Check them"):
        ImapProvider(imap_settings, "wrong").connect()


def test_refused_port(imap_settings: ImapSettings, imap_user: MailUser) -> None:
    settings = replace(imap_settings, port=free_port())  # nothing listens there
    report = test_connection(settings, imap_user.password)
    assert not report.ok and report.step == "connect"
    assert "connection refused" in report.message and "Check the port" in report.message
    with pytest.raises(TransientError):
        ImapProvider(settings, imap_user.password).connect()


def test_unknown_host(imap_settings: ImapSettings, imap_user: MailUser) -> None:
    # .invalid never resolves (RFC 2606).
    settings = replace(imap_settings, host="imap.mailroom-test.invalid")
    report = test_connection(settings, imap_user.password)
    assert not report.ok and report.step == "dns"
    assert "could not be found" in report.message
    with pytest.raises(ConfigError, match="host name"):
        ImapProvider(settings, imap_user.password).connect()


def test_tls_to_a_plain_port_is_a_tls_failure(
    imap_settings: ImapSettings, imap_user: MailUser
) -> None:
    settings = replace(imap_settings, security="ssl")  # port is the plain one
    report = test_connection(settings, imap_user.password)
    assert not report.ok and report.step == "tls"
    assert "TLS" in report.message and "993" in report.message


def test_timeout_when_the_server_never_greets(
    imap_settings: ImapSettings, imap_user: MailUser
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts into the backlog, never answers
        settings = replace(imap_settings, port=silent.getsockname()[1], timeout=0.5)
        report = test_connection(settings, imap_user.password)
    assert not report.ok and report.step == "connect"
    assert "did not answer" in report.message


def test_missing_folder(imap_settings: ImapSettings, imap_user: MailUser) -> None:
    report = test_connection(imap_settings, imap_user.password, folders=["INBOX", "Support"])
    assert not report.ok and report.step == "folders"
    assert "'Support'" in report.message and "INBOX" in report.message
    assert report.folders  # what exists, so the person can pick one


def test_starttls_refused_when_server_lacks_it(dovecot_reduced: DovecotServer) -> None:
    user, password = dovecot_reduced.new_user()  # this instance runs without TLS
    settings = imap_settings_for(dovecot_reduced, user, security="starttls")
    report = test_connection(settings, password)
    assert not report.ok and report.step == "connect"
    assert "STARTTLS" in report.message


def test_protocol_debug_log_is_off_unless_asked_for(
    imap_settings: ImapSettings, imap_user: MailUser, caplog: pytest.LogCaptureFixture
) -> None:
    """imapclient turns on imaplib's debug output, which formats every response (message
    bodies included) for a logger that then drops it. It is off unless that logger is
    enabled for DEBUG, and then it is there, with the password redacted."""
    with ImapProvider(imap_settings, imap_user.password) as imap:
        assert imap._require_client()._imap.debug == 0
        imap.select("INBOX")
    assert not [r for r in caplog.records if r.name == "imapclient.imaplib"]

    caplog.set_level(logging.DEBUG, logger="imapclient.imaplib")
    with ImapProvider(imap_settings, imap_user.password) as imap:
        assert imap._require_client()._imap.debug == 5
        imap.select("INBOX")
    lines = [r.getMessage() for r in caplog.records if r.name == "imapclient.imaplib"]
    assert any("SELECT" in line for line in lines)
    assert not any(imap_user.password in line for line in lines)
