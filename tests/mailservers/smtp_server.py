"""A real SMTP submission server on loopback (aiosmtpd) that delivers into Dovecot.

* AUTH PLAIN/LOGIN against the Dovecot users' passwords (no TLS required on loopback);
  MAIL without AUTH is refused with 530, as submission servers do.
* STARTTLS on the plain port and implicit TLS on ``ssl_port``, with the fixture's cert.
* Recipients ``<user>@mailroom.test`` of existing Dovecot users are delivered into that
  user's INBOX; ``…@external.test`` is accepted and only recorded; any other address is
  refused with 550; an address starting with ``tempfail`` gets 451.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from bot.providers.types import Security, SmtpSettings
from tests.mailservers.dovecot import DovecotServer, free_port
from tests.mailservers.tls import TlsMaterial

EXTERNAL_DOMAIN = "external.test"


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    authenticated_as: str | None
    delivered_uids: dict[str, int]  # dovecot username → INBOX UID


class _Authenticator:
    def __init__(self, dovecot: DovecotServer) -> None:
        self.dovecot = dovecot

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if mechanism not in ("LOGIN", "PLAIN") or not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = self.dovecot.check_login(login, password)
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower().startswith("tempfail"):
            return "451 4.3.0 Temporary lookup failure, try again later"
        domain = address.rpartition("@")[2].lower()
        local_user = self.owner.dovecot.username_for_address(address)
        if local_user is None and domain != EXTERNAL_DOMAIN:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        loop = asyncio.get_running_loop()
        delivered: dict[str, int] = {}
        for rcpt in envelope.rcpt_tos:
            user = self.owner.dovecot.username_for_address(rcpt)
            if user is not None:
                delivered[user] = await loop.run_in_executor(
                    None, self.owner.dovecot.deliver, user, raw
                )
        auth = session.auth_data if session.authenticated else None
        with self.owner.lock:
            self.owner.messages.append(
                ReceivedMessage(
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    raw=raw,
                    authenticated_as=auth if isinstance(auth, str) else None,
                    delivered_uids=delivered,
                )
            )
            n = len(self.owner.messages)
        return f"250 2.0.0 Ok: queued as MR{n:06d}"


class SmtpServer:
    """Plain/STARTTLS listener on ``port`` and, with TLS material, SMTPS on ``ssl_port``."""

    host = "127.0.0.1"

    def __init__(
        self, dovecot: DovecotServer, tls: TlsMaterial | None, *, require_auth: bool = True
    ) -> None:
        self.require_auth = require_auth  # False: a relay (smarthost) that offers no AUTH
        self.dovecot = dovecot
        self.tls = tls
        self.messages: list[ReceivedMessage] = []
        self.lock = threading.Lock()
        self._controllers: list[Controller] = []
        self.port = 0
        self.ssl_port: int | None = None

    def _kwargs(self) -> dict[str, Any]:
        if not self.require_auth:
            return {"enable_SMTPUTF8": True}
        return {
            "authenticator": _Authenticator(self.dovecot),
            "auth_required": True,
            "auth_require_tls": False,  # loopback only
            "enable_SMTPUTF8": True,
        }

    def start(self) -> None:
        handler = _Handler(self)
        self.port = free_port()
        plain = Controller(
            handler,
            hostname=self.host,
            port=self.port,
            tls_context=self.tls.server_context() if self.tls else None,
            **self._kwargs(),
        )
        plain.start()
        self._controllers.append(plain)
        if self.tls:
            self.ssl_port = free_port()
            smtps = Controller(
                handler,
                hostname=self.host,
                port=self.ssl_port,
                ssl_context=self.tls.server_context(),
                **self._kwargs(),
            )
            smtps.start()
            self._controllers.append(smtps)

    def stop(self) -> None:
        for c in self._controllers:
            c.stop()
        self._controllers.clear()

    def settings(self, username: str = "", *, security: Security = "plain") -> SmtpSettings:
        port = self.ssl_port if security == "ssl" else self.port
        if port is None:
            raise RuntimeError("this SMTP server was started without TLS")
        return SmtpSettings(
            host=self.host,
            port=port,
            security=security,
            username=username,
            timeout=10.0,
            ca_file=str(self.tls.ca_path) if self.tls else None,
        )

    def messages_to(self, address: str) -> list[ReceivedMessage]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_tos]
