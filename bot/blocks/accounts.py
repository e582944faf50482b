"""Account admin modals (pure): provider chooser, add IMAP, edit sync settings, sync log, remove.

Passwords are never put back into a view (no initial_value): Slack keeps what was typed across
views.update as long as block_id and action_id stay the same, which they do here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.blocks import ids
from bot.blocks.search import slack_date
from bot.blocks.text import escape_mrkdwn, mrkdwn, plain, truncate
from bot.folder_choices import well_known_choices
from bot.mail.richtext import clean_rich_text, is_blank, plain_to_rich_text

SECURITY_LABELS = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "plain": "None (unencrypted)"}
FREQUENCIES: tuple[tuple[int, str], ...] = (
    (60, "Every minute"),
    (300, "Every 5 minutes"),
    (900, "Every 15 minutes"),
    (1800, "Every 30 minutes"),
    (3600, "Every hour"),
)
MAX_FOLDER_OPTIONS = 100  # multi_static_select limit; more folders fall back to a text input
NOT_LISTED = " (not in the list)"  # a saved folder choice the provider no longer lists

# block_id / action_id of each input: handlers read the submitted state with these.
B_EMAIL = "acc_email"
B_IMAP_HOST, B_IMAP_PORT, B_IMAP_SEC = "acc_imap_host", "acc_imap_port", "acc_imap_sec"
B_IMAP_USER, B_IMAP_PW = "acc_imap_user", "acc_imap_pw"
B_SMTP_HOST, B_SMTP_PORT, B_SMTP_SEC = "acc_smtp_host", "acc_smtp_port", "acc_smtp_sec"
B_SMTP_USER, B_SMTP_PW = "acc_smtp_user", "acc_smtp_pw"
B_CHANNEL, B_FREQ, B_FOLDERS, B_AUTOLINK = "acc_channel", "acc_freq", "acc_folders", "acc_autolink"
B_TEST_RESULT = "acc_test_result"
B_SIGNATURE = "acc_signature"
B_BROADCAST = "acc_broadcast"  # Account.config["broadcast_followups"] (bot/inbox/announce.py)
B_SMTP_AUTH = "acc_smtp_auth"
SMTP_LOGIN, SMTP_NO_LOGIN = "login", "none"
SMTP_AUTH_LABELS = {
    SMTP_LOGIN: "Log in with a username and password",
    SMTP_NO_LOGIN: "No login (a relay that trusts this server)",
}

A = "v"  # action_id of every input element (the block_id tells them apart)


@dataclass(frozen=True)
class ImapForm:
    """What the add-account modal holds, checked. Passwords stay in memory only."""

    email: str
    imap_host: str
    imap_port: int
    imap_security: str
    imap_username: str
    imap_password: str = field(repr=False)
    smtp_host: str
    smtp_port: int
    smtp_security: str
    smtp_username: str
    smtp_password: str = field(repr=False)
    channel_id: str | None
    interval: int
    folders: tuple[str, ...]
    auto_link: bool


@dataclass(frozen=True)
class SyncSettingsForm:
    channel_id: str | None
    interval: int
    folders: tuple[str, ...]
    auto_link: bool
    broadcast: bool | None = None  # None: the form had no such field (leave it as it is)
    folder_names: tuple[tuple[str, str], ...] = ()  # (value, readable name) where they differ


@dataclass(frozen=True)
class ConnectionOutcome:
    ok: bool
    message: str
    folders: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    started_at: datetime
    finished_at: datetime | None
    trigger: str
    status: str
    new_count: int = 0
    changed_count: int = 0
    removed_count: int = 0
    error: str | None = None
    problems: Sequence[Mapping[str, Any]] = field(default_factory=tuple)


def _option(text: str, value: str) -> dict[str, Any]:
    return {"text": plain(text, 75), "value": value}


def smtp_inputs(
    v: Mapping[str, Any], *, user_hint: str, password_hint: str, placeholder: str | None = None
) -> list[dict[str, Any]]:
    """The outgoing-mail part of the add and Edit connection forms (the same fields, hints
    differ: a new account has no stored password to keep)."""
    return [
        {"type": "header", "text": plain("Outgoing mail (SMTP)", 150)},
        _text_input(
            B_SMTP_HOST, "SMTP server", initial=v.get("smtp_host"), placeholder=placeholder
        ),
        _text_input(B_SMTP_PORT, "SMTP port", initial=v.get("smtp_port") or "587"),
        _security_input(B_SMTP_SEC, "SMTP security", v.get("smtp_security") or "starttls"),
        smtp_auth_input(v.get("smtp_auth") or SMTP_LOGIN),
        _text_input(
            B_SMTP_USER,
            "SMTP username",
            initial=v.get("smtp_username"),
            optional=True,
            hint=user_hint,
        ),
        _text_input(B_SMTP_PW, "SMTP password", optional=True, hint=password_hint),
    ]


def _text_input(
    block_id: str,
    label: str,
    *,
    initial: str | None = None,
    optional: bool = False,
    placeholder: str | None = None,
    hint: str | None = None,
    multiline: bool = False,
) -> dict[str, Any]:
    el: dict[str, Any] = {"type": "plain_text_input", "action_id": A}
    if initial:
        el["initial_value"] = truncate(initial, 3000, "")
    if placeholder:
        el["placeholder"] = plain(placeholder, 150)
    if multiline:
        el["multiline"] = True
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label, 2000),
        "element": el,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def _security_input(block_id: str, label: str, initial: str) -> dict[str, Any]:
    opts = [_option(text, value) for value, text in SECURITY_LABELS.items()]
    initial_opt = _option(
        SECURITY_LABELS.get(initial, "SSL/TLS"), initial if initial in SECURITY_LABELS else "ssl"
    )
    return {
        "type": "input",
        "block_id": block_id,
        "label": plain(label),
        "element": {
            "type": "static_select",
            "action_id": A,
            "options": opts,
            "initial_option": initial_opt,
        },
    }


def smtp_auth_input(initial: str = SMTP_LOGIN) -> dict[str, Any]:
    options = [_option(label, value) for value, label in SMTP_AUTH_LABELS.items()]
    chosen = next((o for o in options if o["value"] == initial), options[0])
    return {
        "type": "input",
        "block_id": B_SMTP_AUTH,
        "label": plain("SMTP login"),
        "hint": plain("Internal relays (smarthosts) often take mail without a login."),
        "element": {
            "type": "static_select",
            "action_id": A,
            "options": options,
            "initial_option": chosen,
        },
    }


def smtp_login_wanted(values: Mapping[str, Any]) -> bool:
    """False when the person chose "No login" (a form without the choice logs in)."""
    return (_selected(values, B_SMTP_AUTH) or SMTP_LOGIN) != SMTP_NO_LOGIN


def _frequency_input(interval: int) -> dict[str, Any]:
    known = dict(FREQUENCIES)
    opts = [_option(text, str(sec)) for sec, text in FREQUENCIES]
    if interval not in known:
        opts.append(_option(f"Every {interval} seconds", str(interval)))
        known[interval] = f"Every {interval} seconds"
    return {
        "type": "input",
        "block_id": B_FREQ,
        "label": plain("Check for new mail"),
        "element": {
            "type": "static_select",
            "action_id": A,
            "options": opts,
            "initial_option": _option(known[interval], str(interval)),
        },
    }


def _channel_input(channel_id: str | None) -> dict[str, Any]:
    el: dict[str, Any] = {
        "type": "conversations_select",
        "action_id": A,
        "filter": {"include": ["public", "private"], "exclude_bot_users": True},
    }
    if channel_id:
        el["initial_conversation"] = channel_id
    return {
        "type": "input",
        "block_id": B_CHANNEL,
        "label": plain("Slack channel"),
        "hint": plain(
            "Every conversation becomes a thread here. Only members of this channel see this "
            "account's mail. Invite the Mailroom bot to it."
        ),
        "element": el,
    }


def _autolink_input(auto_link: bool) -> dict[str, Any]:
    opt = _option("Link conversations to clients automatically", "on")
    el: dict[str, Any] = {"type": "checkboxes", "action_id": A, "options": [opt]}
    if auto_link:
        el["initial_options"] = [opt]
    return {
        "type": "input",
        "block_id": B_AUTOLINK,
        "optional": True,
        "label": plain("Clients"),
        "element": el,
    }


def _broadcast_input(broadcast: bool) -> dict[str, Any]:
    opt = _option("Show new emails in older conversations in the channel too", "on")
    el: dict[str, Any] = {"type": "checkboxes", "action_id": A, "options": [opt]}
    if broadcast:
        el["initial_options"] = [opt]
    return {
        "type": "input",
        "block_id": B_BROADCAST,
        "optional": True,
        "label": plain("Follow-ups"),
        "hint": plain("Off: a customer's follow-up is posted only in its conversation's thread."),
        "element": el,
    }


def _test_result_block(outcome: ConnectionOutcome | None, testing: bool) -> dict[str, Any] | None:
    if testing:
        text = ":hourglass_flowing_sand: Testing the connection…"
    elif outcome is None:
        return None
    elif outcome.ok:
        text = f":white_check_mark: *Connection works.* {escape_mrkdwn(truncate(outcome.message, 1500))}"
        if outcome.folders:
            text += "\nFolders: " + escape_mrkdwn(truncate(", ".join(outcome.folders), 1000))
    else:
        text = f":x: *Connection failed.* {escape_mrkdwn(truncate(outcome.message, 2000))}"
    return {"type": "section", "block_id": B_TEST_RESULT, "text": mrkdwn(text)}


OAUTH_PROVIDERS: dict[str, tuple[str, str, str]] = {
    # provider: (chooser title, what it is, company for "Connect <company> account")
    "gmail": ("Gmail", "Gmail or Google Workspace, through the Gmail API", "Google"),
    "graph": ("Microsoft 365", "Microsoft 365 / Outlook, through Microsoft Graph", "Microsoft"),
}
OAUTH_DOC = "docs/oauth-providers.md"


def provider_chooser_modal(
    oauth_missing: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """First step of "Add email account". ``oauth_missing`` maps "gmail" / "graph" to the
    settings still missing for it (empty: ready, a button is shown); None: not configured."""
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": mrkdwn("Which kind of mailbox do you want to connect?")},
        {
            "type": "section",
            "text": mrkdwn("*IMAP / SMTP*\nAny mail server: Fastmail, your host, Dovecot…"),
            "accessory": {
                "type": "button",
                "action_id": ids.ACCOUNT_PROVIDER_PICK,
                "text": plain("Connect IMAP"),
                "value": "imap",
                "style": "primary",
            },
        },
    ]
    unavailable: list[dict[str, Any]] = []
    for provider, (title, what, _company) in OAUTH_PROVIDERS.items():
        missing = None if oauth_missing is None else oauth_missing.get(provider)
        if missing is not None and not missing:
            blocks.append(
                {
                    "type": "section",
                    "text": mrkdwn(f"*{title}*\n{what}. Sign in once; no password is stored."),
                    "accessory": {
                        "type": "button",
                        "action_id": ids.ACCOUNT_PROVIDER_PICK,
                        "text": plain(f"Connect {title}"),
                        "value": provider,
                    },
                }
            )
            continue
        if missing:
            names = ", ".join(f"`{escape_mrkdwn(n)}`" for n in missing)
            why = f"set {names} in Mailroom's settings ({OAUTH_DOC})"
        else:
            why = f"Mailroom's OAuth settings are not set ({OAUTH_DOC})"
        unavailable.append(mrkdwn(truncate(f"*{title}*: not yet available: {why}.", 3000)))
    if unavailable:
        blocks.append({"type": "context", "elements": unavailable})
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_ADD,
        "title": plain("Add email account", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"step": "provider"}),
        "blocks": blocks,
    }


def oauth_step_modal(provider: str) -> dict[str, Any]:
    """Gmail / Microsoft 365: where the mail goes, before signing in."""
    title = OAUTH_PROVIDERS[provider][0]
    company = OAUTH_PROVIDERS[provider][2]
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_OAUTH,
        "title": plain(f"Add {title}", 24),
        "submit": plain("Continue", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"step": "oauth", "provider": provider}),
        "blocks": [
            {
                "type": "section",
                "text": mrkdwn(
                    f"Next you sign in to {company} as the mailbox and allow Mailroom to read, "
                    "label and send its mail. Mailroom keeps only an encrypted token."
                ),
            },
            _channel_input(None),
            _frequency_input(300),
            *_oauth_folder_blocks(provider),
            _autolink_input(True),
            *([_shared_mailbox_input()] if provider == "graph" else []),
        ],
    }


def _oauth_folder_blocks(provider: str) -> list[dict[str, Any]]:
    """Before sign-in there is no API to list labels or folders: the well-known ones only."""
    words = FOLDER_WORDS[provider]
    own = "labels" if provider == "gmail" else "folders"
    return [
        _folder_select(well_known_choices(provider), (), words),
        {
            "type": "context",
            "elements": [
                mrkdwn(
                    f"Your own {own} are offered in *Edit sync settings* (account menu in the "
                    "App Home) once you have signed in."
                )
            ],
        },
    ]


B_SHARED = "acc_shared_mailbox"


def _shared_mailbox_input() -> dict[str, Any]:
    """Microsoft 365 shared mailboxes (support@): no licence, sign-in blocked, so a user with
    Full Access + Send As on it signs in instead (docs/oauth-providers.md)."""
    return {
        "type": "input",
        "block_id": B_SHARED,
        "optional": True,
        "label": plain("Shared mailbox (optional)", 2000),
        "hint": plain(
            "To connect a shared mailbox such as support@, enter its address and sign in as "
            "a user with Full Access and Send As on it. Leave empty for your own mailbox.",
            2000,
        ),
        "element": {"type": "plain_text_input", "action_id": A, "max_length": 320},
    }


def read_shared_mailbox(values: Mapping[str, Any], errors: dict[str, str]) -> str | None:
    mailbox = _str(values, B_SHARED).lower()
    if mailbox and ("@" not in mailbox or any(c.isspace() or c in "/?#" for c in mailbox)):
        errors[B_SHARED] = "Enter the shared mailbox's address, such as support@example.com."
    return mailbox or None


def read_oauth_form(
    values: Mapping[str, Any], provider: str | None = None
) -> tuple[SyncSettingsForm, dict[str, str]]:
    errors: dict[str, str] = {}
    channel, interval, auto = _common(values, errors)
    providers = [provider] if provider else list(OAUTH_PROVIDERS)
    allowed = {value for p in providers for _t, value in well_known_choices(p)}
    el = _value(values, B_FOLDERS)
    folders = tuple(
        str(o.get("value")) for o in el.get("selected_options") or [] if o.get("value") in allowed
    )
    return SyncSettingsForm(channel, interval, folders, auto), errors


def oauth_provider_of(view: Mapping[str, Any]) -> str | None:
    try:
        provider = json.loads(view.get("private_metadata") or "{}").get("provider")
    except (ValueError, AttributeError):
        return None
    return provider if provider in OAUTH_PROVIDERS else None


def oauth_link_modal(provider: str, url: str, *, email: str | None = None) -> dict[str, Any]:
    """The sign-in button (a link: Slack opens it in the browser). ``email``: a Reconnect."""
    title, _what, company = OAUTH_PROVIDERS[provider]
    if email:
        intro = (
            f"Sign in to {company} as *{escape_mrkdwn(email)}* and allow Mailroom again. "
            "The account keeps its channel, settings and threads, and syncs again at once."
        )
    else:
        intro = (
            f"Sign in to {company} as the mailbox you want to connect and allow Mailroom. "
            "When the browser says it is connected, the account appears in the App Home."
        )
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_OAUTH_LINK,
        "title": plain(f"Reconnect {title}" if email else f"Connect {title}", 24),
        "close": plain("Done", 24),
        "blocks": [
            {"type": "section", "text": mrkdwn(intro)},
            {
                "type": "actions",
                "block_id": "oauth_link",
                "elements": [
                    {
                        "type": "button",
                        "action_id": ids.ACCOUNT_OAUTH_OPEN,
                        "text": plain(f"Connect {company} account"),
                        "url": url,
                        "style": "primary",
                    }
                ],
            },
            {
                "type": "context",
                "elements": [
                    mrkdwn(
                        "The link works once, for 15 minutes: do not share it. "
                        "Use a private window to sign in as another account."
                    )
                ],
            },
        ],
    }


def add_imap_modal(
    *,
    values: Mapping[str, str] | None = None,
    outcome: ConnectionOutcome | None = None,
    testing: bool = False,
) -> dict[str, Any]:
    """The IMAP form. `values` pre-fills non-secret fields (e.g. after a test)."""
    v = dict(values or {})
    blocks: list[dict[str, Any]] = [
        _text_input(
            B_EMAIL, "Email address", initial=v.get("email"), placeholder="support@example.com"
        ),
        {"type": "header", "text": plain("Incoming mail (IMAP)", 150)},
        _text_input(
            B_IMAP_HOST, "IMAP server", initial=v.get("imap_host"), placeholder="imap.example.com"
        ),
        _text_input(B_IMAP_PORT, "IMAP port", initial=v.get("imap_port") or "993"),
        _security_input(B_IMAP_SEC, "IMAP security", v.get("imap_security") or "ssl"),
        _text_input(
            B_IMAP_USER,
            "IMAP username",
            initial=v.get("imap_username"),
            optional=True,
            hint="Empty: the email address.",
        ),
        _text_input(B_IMAP_PW, "IMAP password", hint="Stored encrypted; never shown again."),
        *smtp_inputs(
            v,
            user_hint="Empty: the IMAP username.",
            password_hint="Empty: the IMAP password.",
            placeholder="smtp.example.com",
        ),
        {"type": "header", "text": plain("In Slack", 150)},
        _channel_input(v.get("channel_id")),
        _frequency_input(int(v.get("interval") or 300)),
        _text_input(
            B_FOLDERS,
            "Folders to sync",
            initial=v.get("folders"),
            optional=True,
            hint="Comma-separated. Empty: the inbox and the Sent folder.",
        ),
        _autolink_input(v.get("auto_link", "on") == "on"),
        {
            "type": "actions",
            "block_id": "acc_test",
            "elements": [
                {
                    "type": "button",
                    "action_id": ids.ACCOUNT_TEST_CONNECTION,
                    "text": plain("Test connection"),
                    "value": "test",
                }
            ],
        },
    ]
    result = _test_result_block(outcome, testing)
    if result:
        blocks.append(result)
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_ADD,
        "title": plain("Add IMAP account", 24),
        "submit": plain("Add account", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"step": "imap"}),
        "blocks": blocks,
    }


# -- reading a submitted / in-progress form --------------------------------------------------


def _value(values: Mapping[str, Any], block_id: str) -> Any:
    return (values.get(block_id) or {}).get(A) or {}


def _str(values: Mapping[str, Any], block_id: str) -> str:
    return str(_value(values, block_id).get("value") or "").strip()


def _selected(values: Mapping[str, Any], block_id: str) -> str | None:
    opt = _value(values, block_id).get("selected_option")
    return str(opt["value"]) if opt else None


def _port(values: Mapping[str, Any], block_id: str, errors: dict[str, str]) -> int:
    text = _str(values, block_id)
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        errors[block_id] = "A port is a number from 1 to 65535."
    return port


def _host(values: Mapping[str, Any], block_id: str, errors: dict[str, str]) -> str:
    host = _str(values, block_id)
    if not host or any(c.isspace() for c in host) or "/" in host:
        errors[block_id] = "Enter a host name such as imap.example.com."
    return host


def split_folders(text: str) -> tuple[str, ...]:
    seen: list[str] = []
    for part in text.replace("\n", ",").split(","):
        name = part.strip()
        if name and name not in seen:
            seen.append(name)
    return tuple(seen)


def _common(values: Mapping[str, Any], errors: dict[str, str]) -> tuple[str | None, int, bool]:
    channel = _value(values, B_CHANNEL).get("selected_conversation")
    if not channel:
        errors[B_CHANNEL] = "Pick the channel this account's mail goes to."
    try:
        interval = int(_selected(values, B_FREQ) or 300)
    except ValueError:
        interval = 300
    auto = bool(_value(values, B_AUTOLINK).get("selected_options"))
    return (str(channel) if channel else None), interval, auto


def read_imap_form(
    values: Mapping[str, Any], *, require_password: bool = True
) -> tuple[ImapForm, dict[str, str]]:
    """The form and the errors by block_id (empty when it can be saved)."""
    errors: dict[str, str] = {}
    email = _str(values, B_EMAIL).lower()
    if "@" not in email or any(c.isspace() for c in email) or len(email) > 320:
        errors[B_EMAIL] = "Enter an email address such as support@example.com."
    imap_host = _host(values, B_IMAP_HOST, errors)
    imap_port = _port(values, B_IMAP_PORT, errors)
    smtp_host = _host(values, B_SMTP_HOST, errors)
    smtp_port = _port(values, B_SMTP_PORT, errors)
    imap_user = _str(values, B_IMAP_USER) or email
    imap_pw = str(_value(values, B_IMAP_PW).get("value") or "")
    if require_password and not imap_pw:
        errors[B_IMAP_PW] = "Enter the IMAP password."
    channel, interval, auto = _common(values, errors)
    login = smtp_login_wanted(values)
    form = ImapForm(
        email=email,
        imap_host=imap_host,
        imap_port=imap_port,
        imap_security=_selected(values, B_IMAP_SEC) or "ssl",
        imap_username=imap_user,
        imap_password=imap_pw,
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        smtp_security=_selected(values, B_SMTP_SEC) or "starttls",
        # No login: an empty username is what SmtpSettings reads as "no AUTH".
        smtp_username=(_str(values, B_SMTP_USER) or imap_user) if login else "",
        smtp_password=(str(_value(values, B_SMTP_PW).get("value") or "") or imap_pw)
        if login
        else "",
        channel_id=channel,
        interval=interval,
        folders=split_folders(_str(values, B_FOLDERS)),
        auto_link=auto,
    )
    return form, errors


def server_prefill(form: Any) -> dict[str, str]:
    """The servers' non-secret fields of a form (add account or Edit connection), to show it
    again with: never the passwords."""
    return {
        "imap_host": form.imap_host,
        "imap_port": str(form.imap_port or ""),
        "imap_security": form.imap_security,
        "imap_username": form.imap_username,
        "smtp_host": form.smtp_host,
        "smtp_port": str(form.smtp_port or ""),
        "smtp_security": form.smtp_security,
        "smtp_auth": SMTP_LOGIN if form.smtp_username else SMTP_NO_LOGIN,
        "smtp_username": form.smtp_username,
    }


def form_prefill(form: ImapForm) -> dict[str, str]:
    """Non-secret values to re-render the form with (never the passwords)."""
    return {
        "email": form.email,
        **server_prefill(form),
        "channel_id": form.channel_id or "",
        "interval": str(form.interval),
        "folders": ", ".join(form.folders),
        "auto_link": "on" if form.auto_link else "off",
    }


def read_sync_settings(values: Mapping[str, Any]) -> tuple[SyncSettingsForm, dict[str, str]]:
    errors: dict[str, str] = {}
    channel, interval, auto = _common(values, errors)
    el = _value(values, B_FOLDERS)
    names: list[tuple[str, str]] = []
    if "selected_options" in el:
        selected = el.get("selected_options") or []
        folders = tuple(str(o["value"]) for o in selected)
        for o in selected:
            text = str((o.get("text") or {}).get("text") or "").removesuffix(NOT_LISTED)
            if text and text != o["value"]:
                names.append((str(o["value"]), text))
    else:
        folders = split_folders(str(el.get("value") or ""))
    broadcast = (
        bool(_value(values, B_BROADCAST).get("selected_options")) if B_BROADCAST in values else None
    )
    return SyncSettingsForm(channel, interval, folders, auto, broadcast, tuple(names)), errors


# -- edit, log, remove -------------------------------------------------------------------------


def loading_modal(title: str, text: str, callback_id: str) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": plain(title, 24),
        "close": plain("Close", 24),
        "blocks": [{"type": "section", "text": mrkdwn(f":hourglass_flowing_sand: {text}")}],
    }


@dataclass(frozen=True)
class FolderWords:
    """How the folder choice reads for one provider (no IMAP wording for API accounts)."""

    label: str
    placeholder: str
    hint: str
    typed_hint: str  # the text input shown when the list could not be read
    error: str


FOLDER_WORDS = {
    "imap": FolderWords(
        "Folders to sync",
        "Inbox and Sent",
        "None chosen: the inbox and the Sent folder.",
        "Comma-separated. Empty: the inbox and the Sent folder.",
        "Could not read the folder list from the server:",
    ),
    "gmail": FolderWords(
        "Labels to sync",
        "All mail",
        "New mail is synced when it has one of these labels. None chosen: all mail except "
        "spam, trash and drafts.",
        "Comma-separated label ids (INBOX, SENT, ARCHIVE, Label_…). Empty: all mail except "
        "spam, trash and drafts.",
        "Could not read the labels from Gmail:",
    ),
    "graph": FolderWords(
        "Folders to sync",
        "Inbox, Sent Items and Archive",
        "None chosen: Inbox, Sent Items and Archive.",
        "Comma-separated: inbox, sentitems, archive or folder ids. Empty: Inbox, Sent Items "
        "and Archive.",
        "Could not read the folder list from Microsoft 365:",
    ),
}


def _folder_select(
    choices: Sequence[str | tuple[str, str]], folders: Sequence[str], words: FolderWords
) -> dict[str, Any]:
    pairs = [(c, c) if isinstance(c, str) else c for c in choices]
    listed = {value for _t, value in pairs}
    # A saved choice the provider no longer lists stays chosen and visible, not dropped.
    pairs += [(f"{f}{NOT_LISTED}", f) for f in folders if f not in listed]
    # An option value holds 150 characters; a longer id cut short would name no folder.
    unique = {value: text for text, value in reversed(pairs) if value and len(value) <= 150}
    options = [
        _option(truncate(text or value, 75), value)
        for text, value in pairs
        if unique.pop(value, None) is not None
    ][:MAX_FOLDER_OPTIONS]
    el: dict[str, Any] = {
        "type": "multi_static_select",
        "action_id": A,
        "options": options,
        "placeholder": plain(words.placeholder, 150),
    }
    chosen = [o for o in options if o["value"] in set(folders)]
    if chosen:
        el["initial_options"] = chosen
    return {
        "type": "input",
        "block_id": B_FOLDERS,
        "optional": True,
        "label": plain(words.label),
        "hint": plain(words.hint),
        "element": el,
    }


def edit_modal(
    *,
    account_id: int,
    email: str,
    channel_id: str | None,
    interval: int,
    folders: Sequence[str],
    auto_link: bool,
    server_folders: Sequence[str | tuple[str, str]] | None,
    folder_error: str | None = None,
    signature: str | None = None,
    signature_rich: dict[str, Any] | None = None,
    broadcast: bool = True,
    provider: str = "imap",
) -> dict[str, Any]:
    """Sync settings. Folders (Gmail: labels) are picked from the provider's own list when we
    could read it: plain names, or (readable name, stored value) pairs."""
    words = FOLDER_WORDS.get(provider, FOLDER_WORDS["imap"])
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": mrkdwn(f"*{escape_mrkdwn(email)}*")},
        _channel_input(channel_id),
        _frequency_input(interval),
    ]
    if server_folders and len(server_folders) <= MAX_FOLDER_OPTIONS:
        blocks.append(_folder_select(server_folders, folders, words))
    else:
        blocks.append(
            _text_input(
                B_FOLDERS,
                words.label,
                initial=", ".join(folders),
                optional=True,
                hint=words.typed_hint,
            )
        )
    if folder_error:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    mrkdwn(
                        f":warning: {words.error} " + escape_mrkdwn(truncate(folder_error, 1500))
                    )
                ],
            }
        )
    blocks.append(_autolink_input(auto_link))
    blocks.append(signature_input(signature_rich, signature or ""))
    blocks.append(_broadcast_input(broadcast))
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_EDIT,
        "title": plain("Sync settings", 24),
        "submit": plain("Save", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"account_id": account_id}),
        "blocks": blocks,
    }


def signature_input(rich: dict[str, Any] | None, text: str = "") -> dict[str, Any]:
    """The mailbox's signature: rich text (bold, links… are kept in the email) and a template
    (the email template variables work here). `text`: a signature stored as plain text only."""
    value = clean_rich_text(rich if rich is not None else plain_to_rich_text(text))
    element: dict[str, Any] = {"type": "rich_text_input", "action_id": A}
    if not is_blank(value):
        element["initial_value"] = value
    return {
        "type": "input",
        "block_id": B_SIGNATURE,
        "label": plain("Signature"),
        "optional": True,
        "hint": plain(
            "Added below every email sent from Slack, formatting included. Template variables "
            "work, e.g. {{ agent.name }} or {{ account.email }}; write each {{ … }} in one style."
        ),
        "element": element,
    }


def read_signature(values: Mapping[str, Any]) -> dict[str, Any]:
    """The signature as cleaned rich text (known elements only, safe link targets); the
    `value` of a plain input (a modal opened before the update) as one paragraph."""
    entry = _value(values, B_SIGNATURE)
    if isinstance(entry.get("rich_text_value"), dict):
        return clean_rich_text(entry["rich_text_value"])
    return plain_to_rich_text(str(entry.get("value") or "").strip())


def _duration(run: RunSummary) -> str:
    if run.finished_at is None:
        return "running"
    seconds = max(0.0, (run.finished_at - run.started_at).total_seconds())
    return f"{seconds:.1f} s"


RUN_ICONS = {
    "ok": ":white_check_mark:",
    "partial": ":warning:",
    "error": ":x:",
    "running": ":arrows_counterclockwise:",
}


def sync_log_modal(*, email: str, runs: Sequence[RunSummary], limit: int = 30) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": mrkdwn(f"Latest syncs of *{escape_mrkdwn(email)}*")}
    ]
    if not runs:
        blocks.append({"type": "section", "text": mrkdwn("No sync has run yet.")})
    for run in runs[:limit]:
        head = (
            f"{RUN_ICONS.get(run.status, '')} *{escape_mrkdwn(run.status)}* · "
            f"{slack_date(run.started_at)} · {escape_mrkdwn(run.trigger)} · {_duration(run)}\n"
            f"{run.new_count} new · {run.changed_count} changed · {run.removed_count} removed"
        )
        if run.error:
            head += f"\n:x: {escape_mrkdwn(truncate(run.error, 800))}"
        for p in list(run.problems)[:3]:
            where = " ".join(str(p.get(k)) for k in ("folder", "uid") if p.get(k) is not None)
            head += f"\n• {escape_mrkdwn(truncate(where + ': ' + str(p.get('problem', '')), 300))}"
        if len(run.problems) > 3:
            head += f"\n…and {len(run.problems) - 3} more problems"
        blocks.append({"type": "section", "text": mrkdwn(head)})
    return {
        "type": "modal",
        "callback_id": ids.VIEW_SYNC_LOG,
        "title": plain("Sync log", 24),
        "close": plain("Close", 24),
        "blocks": blocks[:100],
    }


def remove_modal(*, account_id: int, email: str, conversation_count: int) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_REMOVE,
        "title": plain("Remove account", 24),
        "submit": plain("Remove", 24),
        "close": plain("Keep it", 24),
        "private_metadata": json.dumps({"account_id": account_id}),
        "blocks": [
            {
                "type": "section",
                "text": mrkdwn(
                    f"Remove *{escape_mrkdwn(email)}* from Mailroom?\n"
                    f"Its {conversation_count} synced conversations are deleted from Mailroom. "
                    "The mailbox itself and the Slack threads already posted are not touched."
                ),
            }
        ],
    }


def account_id_of(view: Mapping[str, Any]) -> int | None:
    try:
        return int(json.loads(view.get("private_metadata") or "{}")["account_id"])
    except (ValueError, KeyError, TypeError):
        return None


def password_modal(*, account_id: int, email: str) -> dict[str, Any]:
    """Reconnect an IMAP account: new passwords, tested before they are stored."""
    return {
        "type": "modal",
        "callback_id": ids.VIEW_ACCOUNT_PASSWORD,
        "title": plain("Reconnect", 24),
        "submit": plain("Test and save", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"account_id": account_id}),
        "blocks": [
            {
                "type": "section",
                "text": mrkdwn(
                    f"New password for *{escape_mrkdwn(email)}*. It is tested against the "
                    "IMAP server first and stored (encrypted) only if the server accepts it."
                ),
            },
            _text_input(B_IMAP_PW, "IMAP password"),
            _text_input(
                B_SMTP_PW,
                "SMTP password",
                optional=True,
                hint="Empty: the same as the IMAP password.",
            ),
        ],
    }


def read_password_form(values: Mapping[str, Any]) -> tuple[str, str | None, dict[str, str]]:
    imap_pw = _str(values, B_IMAP_PW)
    smtp_pw = _str(values, B_SMTP_PW) or None
    errors = {} if imap_pw else {B_IMAP_PW: "Enter the mailbox password."}
    return imap_pw, smtp_pw, errors
