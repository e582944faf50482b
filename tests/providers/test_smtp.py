"""send_message / test_smtp against aiosmtpd on loopback that delivers into Dovecot."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.providers.errors import AuthError, ConfigError, MessageRejected, TransientError
from bot.providers.imap import ImapProvider
from bot.providers.smtp import send_message, test_smtp
from tests.mailservers.dovecot import DovecotServer, MailUser, free_port
from tests.mailservers.fixtures import imap_settings_for
from tests.mailservers.smtp_server import SmtpServer
from tests.providers.messages import make_message

pytestmark = pytest.mark.dovecot


@pytest.fixture
def recipient(dovecot: DovecotServer) -> MailUser:
    return dovecot.user(dovecot.new_user("rcpt")[0])


@pytest.mark.parametrize("security", ["plain", "starttls", "ssl"])
def test_send_with_auth_lands_in_the_recipients_inbox(
    smtp_server: SmtpServer,
    dovecot: DovecotServer,
    imap_user: MailUser,
    recipient: MailUser,
    security: str,
) -> None:
    raw, mid = make_message("Re: your order", sender=imap_user.address, to=recipient.address)
    settings = smtp_server.settings(imap_user.username, security=security)  # type: ignore[arg-type]
    reply = send_message(
        settings,
        imap_user.password,
        raw,
        mail_from=imap_user.address,
        rcpt_to=[recipient.address],
    )
    assert "queued as" in reply
    [received] = smtp_server.messages_to(recipient.address)
    assert received.authenticated_as == imap_user.username
    assert received.mail_from == imap_user.address
    with ImapProvider(imap_settings_for(dovecot, recipient.username), recipient.password) as imap:
        [uid] = imap.find_message_id("INBOX", mid)
        [msg] = [m for b in imap.fetch_new("INBOX", uid - 1) for m in b]
        assert b"Subject: Re: your order" in msg.raw
        assert "\\Seen" not in msg.flags


def test_wrong_password_is_an_auth_error(
    smtp_server: SmtpServer, imap_user: MailUser, recipient: MailUser
) -> None:
    raw, _ = make_message()
    with pytest.raises(AuthError, match="rejected the username or password"):
        send_message(
            smtp_server.settings(imap_user.username),
            "wrong",
            raw,
            mail_from=imap_user.address,
            rcpt_to=[recipient.address],
        )
    assert smtp_server.messages_to(recipient.address) == []
    report = test_smtp(smtp_server.settings(imap_user.username), "wrong")
    assert not report.ok and report.step == "login"


def test_rejected_recipient_is_message_rejected_with_server_text(
    smtp_server: SmtpServer, imap_user: MailUser
) -> None:
    raw, _ = make_message()
    with pytest.raises(MessageRejected) as info:
        send_message(
            smtp_server.settings(imap_user.username),
            imap_user.password,
            raw,
            mail_from=imap_user.address,
            rcpt_to=["nobody@mailroom.test"],
        )
    assert info.value.code == 550
    assert "User unknown" in info.value.server_text
    assert info.value.delivered_to == ()


def test_partly_rejected_says_who_got_it(
    smtp_server: SmtpServer, imap_user: MailUser, recipient: MailUser
) -> None:
    raw, _ = make_message()
    with pytest.raises(MessageRejected) as info:
        send_message(
            smtp_server.settings(imap_user.username),
            imap_user.password,
            raw,
            mail_from=imap_user.address,
            rcpt_to=[recipient.address, "nobody@mailroom.test"],
        )
    assert info.value.delivered_to == (recipient.address,)
    assert set(info.value.refused) == {"nobody@mailroom.test"}
    assert len(smtp_server.messages_to(recipient.address)) == 1


def test_temporary_recipient_failure_is_transient(
    smtp_server: SmtpServer, imap_user: MailUser
) -> None:
    raw, _ = make_message()
    with pytest.raises(TransientError, match="451"):
        send_message(
            smtp_server.settings(imap_user.username),
            imap_user.password,
            raw,
            mail_from=imap_user.address,
            rcpt_to=["tempfail@mailroom.test"],
        )


def test_sending_without_login_is_a_config_error(
    smtp_server: SmtpServer, imap_user: MailUser
) -> None:
    raw, _ = make_message()
    with pytest.raises(ConfigError, match="requires a login"):
        send_message(
            smtp_server.settings(""),
            "",
            raw,
            mail_from=imap_user.address,
            rcpt_to=["someone@external.test"],
        )


def test_connection_failures(smtp_server: SmtpServer, imap_user: MailUser) -> None:
    base = smtp_server.settings(imap_user.username)
    ok = test_smtp(base, imap_user.password)
    assert ok.ok, ok.message
    refused = test_smtp(replace(base, port=free_port()), imap_user.password)
    assert not refused.ok and refused.step == "connect" and "refused" in refused.message
    dns = test_smtp(replace(base, host="smtp.mailroom-test.invalid"), imap_user.password)
    assert not dns.ok and dns.step == "dns"
    tls = test_smtp(replace(base, security="ssl"), imap_user.password)
    assert not tls.ok and tls.step == "tls"
    untrusted = test_smtp(
        replace(smtp_server.settings(imap_user.username, security="starttls"), ca_file=None),
        imap_user.password,
    )
    assert not untrusted.ok and untrusted.step == "tls" and "not trusted" in untrusted.message


def test_header_injection_in_envelope_is_refused(
    smtp_server: SmtpServer, imap_user: MailUser
) -> None:
    raw, _ = make_message()
    with pytest.raises(ValueError):
        send_message(
            smtp_server.settings(imap_user.username),
            imap_user.password,
            raw,
            mail_from=imap_user.address,
            rcpt_to=["a@external.test\r\nRCPT TO:<b@external.test>"],
        )
