"""An IMAP account's servers (pure): the SMTP login choice, the App Home summary of where an
account connects, and the "Edit connection" modal with its reader.

Passwords are never shown: the modal's password inputs start empty, and empty means "keep the
stored one". The servers are checked when the modal is submitted; nothing is saved unless
they accept the settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.blocks import ids
from bot.blocks.accounts import (
    B_IMAP_HOST,
    B_IMAP_PORT,
    B_IMAP_PW,
    B_IMAP_SEC,
    B_IMAP_USER,
    B_SMTP_HOST,
    B_SMTP_PORT,
    B_SMTP_PW,
    B_SMTP_SEC,
    B_SMTP_USER,
    SECURITY_LABELS,
    SMTP_LOGIN,
    SMTP_NO_LOGIN,
    ConnectionOutcome,
    _host,
    _port,
    _security_input,
    _selected,
    _str,
    _test_result_block,
    _text_input,
    _value,
    server_prefill,
    smtp_inputs,
    smtp_login_wanted,
)
from bot.blocks.text import escape_mrkdwn, mrkdwn, plain


def server_line(kind: str, server: Mapping[str, Any]) -> str:
    """`IMAP imap.example.com:993 · SSL/TLS · login ann@example.com` (escaped mrkdwn)."""
    if not server.get("host"):
        return f"{kind}: _not set_"
    security = SECURITY_LABELS.get(str(server.get("security") or ""), str(server.get("security")))
    user = str(server.get("username") or "")
    login = f"login {escape_mrkdwn(user)}" if user else "no login"
    return (
        f"{kind} {escape_mrkdwn(str(server['host']))}:{int(server.get('port') or 0)} · "
        f"{escape_mrkdwn(security)} · {login}"
    )


def connection_lines(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The App Home's lines about an IMAP account's servers (never a password)."""
    return (
        server_line("IMAP", config.get("imap") or {}),
        server_line("SMTP", config.get("smtp") or {}),
    )


@dataclass(frozen=True)
class ConnectionForm:
    imap_host: str
    imap_port: int
    imap_security: str
    imap_username: str
    imap_password: str  # "" keeps the stored password
    smtp_host: str
    smtp_port: int
    smtp_security: str
    smtp_username: str  # "" sends without logging in
    smtp_password: str  # "" keeps the stored password


def connection_prefill(email: str, config: Mapping[str, Any]) -> dict[str, str]:
    imap = config.get("imap") or {}
    smtp = config.get("smtp") or {}
    smtp_user = smtp.get("username")
    no_login = smtp_user is not None and str(smtp_user) == ""
    return {
        "imap_host": str(imap.get("host") or ""),
        "imap_port": str(imap.get("port") or ""),
        "imap_security": str(imap.get("security") or "ssl"),
        "imap_username": str(imap.get("username") or email),
        "smtp_host": str(smtp.get("host") or ""),
        "smtp_port": str(smtp.get("port") or ""),
        "smtp_security": str(smtp.get("security") or "starttls"),
        "smtp_auth": SMTP_NO_LOGIN if no_login else SMTP_LOGIN,
        "smtp_username": "" if no_login else str(smtp_user or email),
    }


def connection_form_prefill(form: ConnectionForm) -> dict[str, str]:
    """Non-secret values to show the modal again with (after a refused check)."""
    return server_prefill(form)


def connection_modal(
    *,
    account_id: int,
    email: str,
    values: Mapping[str, str],
    outcome: ConnectionOutcome | None = None,
    testing: bool = False,
) -> dict[str, Any]:
    v = dict(values)
    keep = "Empty: keep the stored password (it is never shown)."
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": mrkdwn(
                f"*{escape_mrkdwn(email)}*\nSaving checks these settings against the servers "
                "first; nothing changes unless they accept them. Synced mail, conversations "
                "and links stay."
            ),
        },
        {"type": "header", "text": plain("Incoming mail (IMAP)", 150)},
        _text_input(B_IMAP_HOST, "IMAP server", initial=v.get("imap_host")),
        _text_input(B_IMAP_PORT, "IMAP port", initial=v.get("imap_port") or "993"),
        _security_input(B_IMAP_SEC, "IMAP security", v.get("imap_security") or "ssl"),
        _text_input(B_IMAP_USER, "IMAP username", initial=v.get("imap_username")),
        _text_input(B_IMAP_PW, "IMAP password", optional=True, hint=keep),
        *smtp_inputs(v, user_hint="Empty with a login: the IMAP username.", password_hint=keep),
    ]
    result = _test_result_block(outcome, testing)
    if result:
        blocks.append(result)
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_CONNECTION,
        "title": plain("Edit connection", 24),
        "submit": plain("Test and save", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"account_id": account_id}),
        "blocks": blocks,
    }


def read_connection_form(values: Mapping[str, Any]) -> tuple[ConnectionForm, dict[str, str]]:
    """The form and the errors by block_id (empty when it can be checked)."""
    errors: dict[str, str] = {}
    imap_user = _str(values, B_IMAP_USER)
    if not imap_user:
        errors[B_IMAP_USER] = "Enter the IMAP username (often the email address)."
    login = smtp_login_wanted(values)
    form = ConnectionForm(
        imap_host=_host(values, B_IMAP_HOST, errors),
        imap_port=_port(values, B_IMAP_PORT, errors),
        imap_security=_selected(values, B_IMAP_SEC) or "ssl",
        imap_username=imap_user,
        imap_password=str(_value(values, B_IMAP_PW).get("value") or ""),
        smtp_host=_host(values, B_SMTP_HOST, errors),
        smtp_port=_port(values, B_SMTP_PORT, errors),
        smtp_security=_selected(values, B_SMTP_SEC) or "starttls",
        smtp_username=(_str(values, B_SMTP_USER) or imap_user) if login else "",
        smtp_password=str(_value(values, B_SMTP_PW).get("value") or "") if login else "",
    )
    return form, errors
