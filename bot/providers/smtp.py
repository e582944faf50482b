"""Sending over SMTP (submission) with smtplib; library errors become provider errors."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Iterator, Sequence

from bot.providers.errors import (
    AuthError,
    ConfigError,
    MessageRejected,
    NotSupported,
    ProtocolError,
    ProviderError,
    TlsError,
    TransientError,
)
from bot.providers.types import ConnectionReport, SmtpSettings


def _where(s: SmtpSettings) -> str:
    return f"{s.host}:{s.port}"


def _reply(resp: bytes | str) -> str:
    return resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)


def _ssl_context(settings: SmtpSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if settings.ca_file:
        ctx.load_verify_locations(cafile=settings.ca_file)
    return ctx


def translate_smtp_error(
    exc: BaseException, settings: SmtpSettings, *, action: str
) -> ProviderError:
    """Map smtplib/socket/ssl errors to provider errors whose message says what to do."""
    where = _where(settings)
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return AuthError(
            f"The SMTP server {where} rejected the username or password for "
            f"{settings.username!r} ({exc.smtp_code} {_reply(exc.smtp_error)}). Check them; "
            "some providers need an app password or SMTP AUTH switched on."
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ConfigError(
            f"The SMTP server {where} does not offer {action} ({exc}). On a plain "
            "connection many servers only offer login after STARTTLS: check the security "
            "setting (465 is SSL, 587 is STARTTLS)."
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientError(
            f"The SMTP server {where} closed the connection during {action}. It will be retried."
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        code, text = exc.smtp_code, _reply(exc.smtp_error)
        if code == 530:
            return ConfigError(
                f"The SMTP server {where} requires a login before sending ({code} {text}): "
                "set the SMTP username and password in the account settings."
            )
        if 400 <= code < 500:
            return TransientError(
                f"The SMTP server {where} asked to try again later during {action} "
                f"({code} {text}). It will be retried."
            )
        return MessageRejected(
            f"The SMTP server {where} refused the message during {action} ({code} {text}). "
            "Check the addresses and the message; sending it again unchanged will fail.",
            code=code,
            server_text=text,
        )
    if isinstance(exc, smtplib.SMTPException):
        # e.g. "No suitable authentication method found", "STARTTLS extension not supported".
        return ConfigError(
            f"The SMTP server {where} cannot do what the settings ask ({exc}) during "
            f"{action}. Check the security setting and the username."
        )
    if isinstance(exc, socket.gaierror):
        return ConfigError(
            f"The mail server name {settings.host!r} could not be found ({exc.strerror}). "
            "Check the SMTP host name for typos."
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsError(
            f"The TLS certificate of {where} is not trusted ({exc.verify_message}). Check "
            "the host name, or give the CA certificate of a private server in the settings."
        )
    if isinstance(exc, ssl.SSLError):
        return TlsError(
            f"Could not start an encrypted (TLS) connection to {where} ({exc.reason or exc}). "
            "The port may not use that kind of security: 465 is SSL, 587 is STARTTLS."
        )
    if isinstance(exc, ConnectionRefusedError):
        return TransientError(
            f"Nothing is listening on {where} (connection refused). Check the port (465 "
            "for SSL, 587 for STARTTLS) and that the server is running."
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransientError(
            f"{where} did not answer within {settings.timeout:g} seconds during {action}. "
            "It will be retried."
        )
    if isinstance(exc, OSError):
        return TransientError(f"Network error talking to {where} during {action} ({exc}).")
    return ProtocolError(f"Unexpected error during {action} with {where}: {type(exc).__name__}")


@contextlib.contextmanager
def _session(settings: SmtpSettings, password: str) -> Iterator[smtplib.SMTP]:
    """An EHLO'd, TLS'd and logged-in SMTP session, closed on exit."""
    if settings.security not in ("ssl", "starttls", "plain"):
        raise ConfigError(
            f"Unknown SMTP security {settings.security!r}: use ssl, starttls or plain."
        )
    step = "connecting"
    smtp: smtplib.SMTP | None = None
    try:
        if settings.security == "ssl":
            smtp = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                timeout=settings.timeout,
                context=_ssl_context(settings),
            )
        else:
            smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        step = "greeting"
        smtp.ehlo()
        if settings.security == "starttls":
            step = "starting TLS"
            if not smtp.has_extn("starttls"):
                raise ConfigError(
                    f"The SMTP server {_where(settings)} does not offer STARTTLS. Use SSL "
                    "(usually port 465), or plain only on a trusted network."
                )
            smtp.starttls(context=_ssl_context(settings))
            smtp.ehlo()
        if settings.username:
            step = "logging in"
            if not smtp.has_extn("auth"):
                raise smtplib.SMTPNotSupportedError("AUTH")
            smtp.login(settings.username, password)
        step = "sending"
        yield smtp
    except Exception as exc:
        raise translate_smtp_error(exc, settings, action=step) from exc
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except Exception:
                with contextlib.suppress(Exception):
                    smtp.close()


def _check_line(value: str, what: str) -> None:
    if not value or any(c in value for c in "\r\n\0"):
        raise ValueError(f"{what} must be a non-empty single line")


def send_message(
    settings: SmtpSettings,
    password: str,
    raw: bytes,
    *,
    mail_from: str,
    rcpt_to: Sequence[str],
) -> str:
    """Send ``raw`` to ``rcpt_to``; returns the server's final reply text (queue id).

    Raises AuthError, ConfigError, TransientError (4xx, network), or MessageRejected
    (5xx). A MessageRejected with ``delivered_to`` set means some recipients got it.
    """
    _check_line(mail_from, "the envelope sender")
    if not rcpt_to:
        raise ValueError("at least one recipient is needed")
    for r in rcpt_to:
        _check_line(r, "a recipient")
    with _session(settings, password) as smtp:
        options: list[str] = []
        if any(b > 127 for b in raw) and smtp.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")
        if not (mail_from.isascii() and all(r.isascii() for r in rcpt_to)):
            if not smtp.has_extn("smtputf8"):
                raise NotSupported(
                    f"The SMTP server {_where(settings)} cannot send to or from non-ASCII "
                    "addresses (no SMTPUTF8)."
                )
            options.append("SMTPUTF8")
        code, resp = smtp.mail(mail_from, options)
        if code != 250:
            smtp.rset()
            raise smtplib.SMTPSenderRefused(code, resp, mail_from)
        accepted: list[str] = []
        refused: dict[str, tuple[int, str]] = {}
        for r in rcpt_to:
            code, resp = smtp.rcpt(r)
            if code in (250, 251):
                accepted.append(r)
            else:
                refused[r] = (code, _reply(resp))
        if not accepted:
            smtp.rset()
            if all(400 <= c < 500 for c, _ in refused.values()):
                first = next(iter(refused.values()))
                raise TransientError(
                    f"The SMTP server {_where(settings)} asked to try the recipients again "
                    f"later ({first[0]} {first[1]}). It will be retried."
                )
            detail = "; ".join(f"{r}: {c} {t}" for r, (c, t) in refused.items())
            first_code = next(iter(refused.values()))[0]
            raise MessageRejected(
                f"The SMTP server {_where(settings)} refused every recipient ({detail}). "
                "Check the addresses.",
                code=first_code,
                server_text=detail,
                refused=refused,
            )
        code, resp = smtp.data(raw)
        text = _reply(resp)
        if code != 250:
            raise smtplib.SMTPDataError(code, resp)
        if refused:
            detail = "; ".join(f"{r}: {c} {t}" for r, (c, t) in refused.items())
            raise MessageRejected(
                f"The message was sent to {', '.join(accepted)}, but the SMTP server refused "
                f"{detail}. Do not resend it to everyone; check the refused addresses.",
                code=next(iter(refused.values()))[0],
                server_text=text,
                refused=refused,
                delivered_to=tuple(accepted),
            )
        return text


def test_smtp(settings: SmtpSettings, password: str) -> ConnectionReport:
    """Connect, start TLS and log in as the settings say; never raises."""
    try:
        socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return ConnectionReport(
            False, "dns", str(translate_smtp_error(exc, settings, action="dns"))
        )
    try:
        with _session(settings, password) as smtp:
            smtp.noop()
    except TlsError as exc:
        return ConnectionReport(False, "tls", str(exc))
    except AuthError as exc:
        return ConnectionReport(False, "login", str(exc))
    except ProviderError as exc:
        return ConnectionReport(False, "connect", str(exc))
    except Exception as exc:  # the contract is "never raises"
        return ConnectionReport(
            False,
            "unknown",
            f"Unexpected error while checking {_where(settings)}: {type(exc).__name__}.",
        )
    who = f" as {settings.username!r}" if settings.username else " (no login)"
    return ConnectionReport(True, "login", f"Connected to {_where(settings)}{who}; ready to send.")


test_smtp.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
