"""IMAP provider on imapclient: one connection, plain data out.

Sync rules this module follows (see the notes in ``docs/providers.md``):

* UIDs are only meaningful with the folder's UIDVALIDITY; :meth:`ImapProvider.select`
  reports it and the caller compares.
* New mail is ``UID FETCH n:*`` with ``BODY.PEEK[]`` (never sets ``\\Seen``); the ``n:*``
  range always includes the highest message, so results are filtered to ``uid >= n``.
* Moves use MOVE, else ``UID COPY`` + ``\\Deleted`` + ``UID EXPUNGE`` (UIDPLUS). Never a
  plain EXPUNGE: it would also purge messages other clients marked ``\\Deleted``.
* QRESYNC is never enabled: imapclient cannot parse VANISHED, so expunges are found by
  diffing :meth:`ImapProvider.list_uids`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from types import TracebackType
from typing import Any

from imapclient import IMAPClient
from imapclient import exceptions as imap_exc
from imapclient.datetime_util import parse_to_datetime
from imapclient.response_parser import parse_fetch_response

from bot.providers.errors import (
    AuthError,
    ConfigError,
    FolderNotFound,
    NotSupported,
    ProtocolError,
    ProviderError,
    TlsError,
    TransientError,
)
from bot.providers.types import (
    ConnectionReport,
    FetchedMessage,
    FlagChange,
    FolderInfo,
    FolderStatus,
    ImapSettings,
)

log = logging.getLogger(__name__)

#: Re-issue IDLE well before the 29-minute limit of RFC 2177; NATs drop quiet links sooner.
IDLE_REISSUE_SECONDS = 24 * 60

_ROLE_ATTRIBUTES = {
    "\\sent": "sent",
    "\\archive": "archive",
    "\\trash": "trash",
    "\\drafts": "drafts",
    "\\junk": "junk",
    "\\all": "all",
}

# Leaf names (lower case) that mean a role when the server has no SPECIAL-USE, best first.
_ROLE_NAMES: dict[str, tuple[str, ...]] = {
    "sent": (
        "sent",
        "sent items",
        "sent messages",
        "sent mail",
        "sent-mail",
        "gesendet",
        "gesendete elemente",
        "gesendete objekte",
        "envoyés",
        "éléments envoyés",
        "elementos enviados",
        "enviados",
        "posta inviata",
        "verzonden items",
    ),
    "archive": ("archive", "archives", "archiv", "archivio", "archivo", "archief"),
    "trash": (
        "trash",
        "deleted items",
        "deleted messages",
        "deleted",
        "bin",
        "papierkorb",
        "gelöschte elemente",
        "corbeille",
        "éléments supprimés",
        "papelera",
        "cestino",
        "prullenbak",
    ),
    "drafts": ("drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze", "concepten"),
    "junk": (
        "junk",
        "spam",
        "junk e-mail",
        "junk email",
        "junk mail",
        "bulk mail",
        "spam-verdacht",
        "courrier indésirable",
    ),
    "all": ("all mail",),
}

_CREATE_NAMES = {
    "archive": "Archive",
    "trash": "Trash",
    "sent": "Sent",
    "drafts": "Drafts",
    "junk": "Junk",
}

# Untagged responses that mean the selected folder changed.
_CHANGE_KINDS = frozenset({b"EXISTS", b"EXPUNGE", b"FETCH", b"RECENT", b"VANISHED"})

_FETCH_META = ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]


def uid_set(uids: Sequence[int]) -> str:
    """Compress UIDs into an IMAP sequence set: ``[1, 2, 3, 7]`` → ``"1:3,7"``."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


def parse_uid_set(text: str) -> list[int]:
    """Expand an IMAP UID set as servers report it in COPYUID (order kept)."""
    out: list[int] = []
    for part in text.split(","):
        if ":" in part:
            a, b = (int(x) for x in part.split(":", 1))
            step = 1 if b >= a else -1
            out.extend(range(a, b + step, step))
        elif part:
            out.append(int(part))
    return out


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _by_bytes(
    uids: Sequence[int], meta: dict[int, Any], max_size: int, max_bytes: int
) -> Iterator[list[int]]:
    """`uids` (those `meta` knows: the rest were expunged) in runs, in order, whose bodies
    together stay within `max_bytes` by RFC822.SIZE; a message over `max_size` is fetched
    header-only and counts as nothing. A run is never empty; one big message is a run alone.
    (Counting messages alone let one batch hold 500 x 25 MB, security-review #16.)"""
    run: list[int] = []
    total = 0
    for uid in uids:
        if uid not in meta:
            continue
        size = int(meta[uid].get(b"RFC822.SIZE", 0) or 0)
        if size > max_size:
            size = 0
        if run and total + size > max_bytes:
            yield run
            run, total = [], 0
        run.append(uid)
        total += size
    if run:
        yield run


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _flags(raw: Any) -> frozenset[str]:
    # \Recent is per-session noise, not a property of the message.
    return frozenset(f for f in (_text(x) for x in raw or ()) if f.lower() != "\\recent")


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _uid_fetch(
    client: IMAPClient,
    uids: str,
    items: Sequence[str],
    modifiers: Sequence[str] = (),
) -> dict[int, dict[bytes, Any]]:
    """``UID FETCH`` of a UID *set string* (``"1:*"``, ``"4:9,12"``), keyed by UID.

    imapclient's own ``fetch()`` only takes lists of single UIDs since 4.0 (it turns
    the argument into ints to drop unsolicited responses), which would blow up every
    range into one number per message. Responses without a UID are unsolicited and
    dropped.
    """
    return _parse_fetch(client, _uid_fetch_data(client, uids, items, modifiers))


def quiet_protocol_log(client: IMAPClient) -> None:
    """Stop imaplib formatting every response for a debug log nobody reads.

    imapclient sets imaplib's debug level to 5 and routes its messages to the
    "imapclient.imaplib" logger, so imaplib builds the repr() of every response, message
    bodies included, before the logger drops it: a third of the fetch thread's time in a full
    sync. The protocol log stays available: it is kept whenever that logger is enabled for
    DEBUG (imapclient's adapter still redacts the LOGIN line)."""
    if not logging.getLogger("imapclient.imaplib").isEnabledFor(logging.DEBUG):
        client._imap.debug = 0


def _uid_fetch_data(
    client: IMAPClient, uids: str, items: Sequence[str], modifiers: Sequence[str] = ()
) -> list[Any]:
    """The untagged FETCH responses of one ``UID FETCH``, as imaplib returns them."""
    imap = client._imap
    args = ["UID", "FETCH", uids, "(" + " ".join(items) + ")"]
    if modifiers:
        args.append("(" + " ".join(modifiers) + ")")
    tag = imap._command(*args)
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    return list(data)


def _parse_fetch(client: IMAPClient, data: list[Any]) -> dict[int, dict[bytes, Any]]:
    out: dict[int, dict[bytes, Any]] = {}
    for msg in parse_fetch_response(data, client.normalise_times, False).values():
        uid = msg.get(b"UID")
        if isinstance(uid, int):
            out[uid] = msg
    return out


# `n (UID u BODY[] {size}` then the literal, then `)`: how Dovecot, Cyrus and most servers
# answer a UID FETCH of BODY.PEEK[] alone.
_PLAIN_BODY_RESPONSE = re.compile(rb"\d+ \(UID (\d+) BODY\[\] \{(\d+)\}")


# An unsolicited flag update: another client changed a message's flags while we fetched (Dovecot
# sends `* 2 FETCH (MODSEQ (5) FLAGS (\Flagged))` after the bodies). It carries no body; the
# general parser drops it from a body fetch too (the next flag sync reads the change).
_FLAG_UPDATE_ITEM = rb'(?:UID \d+|MODSEQ \(\d+\)|FLAGS \([^(){}"\r\n]*\))'
_FLAG_UPDATE = re.compile(rb"\d+ \(" + _FLAG_UPDATE_ITEM + rb"(?: " + _FLAG_UPDATE_ITEM + rb")*\)")


def _bodies_fast(data: list[Any]) -> dict[int, bytes] | None:
    """UID -> message bytes when every response has the plain shape above (or is a flag
    update, skipped); None otherwise.

    imapclient's general response parser is pure Python and was a third of a full sync's
    time, although the bytes it must find are already split out by imaplib. Anything unusual
    (another item order, a size that does not match, a second body for one UID) returns None,
    and the caller parses the same responses with imapclient."""
    out: dict[int, bytes] = {}
    it = iter(data)
    for item in it:
        if isinstance(item, bytes) and _FLAG_UPDATE.fullmatch(item):
            continue
        if not (isinstance(item, tuple) and len(item) == 2):
            return None
        head, literal = item
        m = _PLAIN_BODY_RESPONSE.fullmatch(head) if isinstance(head, bytes) else None
        if m is None or not isinstance(literal, bytes) or int(m.group(2)) != len(literal):
            return None
        if next(it, None) != b")":
            return None
        uid = int(m.group(1))
        if uid in out:
            return None
        out[uid] = literal
    return out


# The answer to UID FETCH (FLAGS INTERNALDATE RFC822.SIZE) in the order asked, as Dovecot and
# most servers give it.
_PLAIN_META_RESPONSE = re.compile(
    rb'(\d+) \(UID (\d+) FLAGS \(([^()"{}]*)\) INTERNALDATE "([^"]*)" RFC822\.SIZE (\d+)\)'
)


# An IMAP date-time (RFC 3501): day (space-padded), month, year, time, zone.
_IMAP_DATE = re.compile(rb"( ?\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {
    m.encode(): n
    for n, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_ZONES: dict[bytes, tzinfo] = {}


def _internaldate(when: bytes, normalise: bool) -> datetime:
    """An INTERNALDATE as imapclient's `parse_to_datetime` gives it (the same instant), read
    with one regex: that parser goes through email.utils and was ~10 us of the fetch thread a
    message. Anything else goes to it."""
    m = _IMAP_DATE.fullmatch(when)
    month = _MONTHS.get(m.group(2)) if m is not None else None
    if m is None or month is None or normalise:
        return parse_to_datetime(when, normalise=normalise)
    day, _, year, hour, minute, second, sign, zh, zm = m.groups()
    zone = _ZONES.get(sign + zh + zm)
    if zone is None:
        offset = timedelta(hours=int(zh), minutes=int(zm))
        zone = _ZONES.setdefault(sign + zh + zm, timezone(-offset if sign == b"-" else offset))
    return datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=zone)


def _meta_fast(client: IMAPClient, data: list[Any]) -> dict[int, dict[bytes, Any]] | None:
    """`_parse_fetch` of the metadata responses when every one has the plain shape above (the
    same values imapclient gives); None otherwise, for the general parser."""
    out: dict[int, dict[bytes, Any]] = {}
    for item in data:
        m = _PLAIN_META_RESPONSE.fullmatch(item) if isinstance(item, bytes) else None
        if m is None:
            return None
        seq, uid, flags, when, size = m.groups()
        try:
            internaldate = _internaldate(when, client.normalise_times)
        except ValueError:
            return None
        out[int(uid)] = {
            b"SEQ": int(seq),
            b"UID": int(uid),
            b"FLAGS": tuple(flags.split()),
            b"INTERNALDATE": internaldate,
            b"RFC822.SIZE": int(size),
        }
    return out


def _uid_fetch_meta(client: IMAPClient, uids: str) -> dict[int, dict[bytes, Any]]:
    """``UID FETCH uids (FLAGS INTERNALDATE RFC822.SIZE)``, keyed by UID."""
    data = _uid_fetch_data(client, uids, _FETCH_META)
    fast = _meta_fast(client, data)
    return fast if fast is not None else _parse_fetch(client, data)


def _uid_fetch_bodies(client: IMAPClient, uids: str) -> dict[int, bytes]:
    """``UID FETCH uids (BODY.PEEK[])``: UID -> full message bytes."""
    data = _uid_fetch_data(client, uids, ["BODY.PEEK[]"])
    fast = _bodies_fast(data)
    if fast is not None:
        return fast
    return {uid: bytes(m.get(b"BODY[]") or b"") for uid, m in _parse_fetch(client, data).items()}


def _has_change(responses: Sequence[Any]) -> bool:
    return any(
        isinstance(r, tuple) and len(r) >= 2 and isinstance(r[1], bytes) and r[1] in _CHANGE_KINDS
        for r in responses
    )


def _where(settings: ImapSettings) -> str:
    return f"{settings.host}:{settings.port}"


def translate_error(
    exc: BaseException, settings: ImapSettings, *, action: str, folder: str | None = None
) -> ProviderError:
    """Turn a socket/ssl/imapclient error into a :class:`ProviderError` with advice."""
    where = _where(settings)
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, imap_exc.LoginError):
        text = str(exc)
        if "UNAVAILABLE" in text.upper():
            return TransientError(
                f"The IMAP server {where} is temporarily unavailable for logins "
                f"({text}). It will be retried later."
            )
        if "PRIVACYREQUIRED" in text.upper():
            return ConfigError(
                f"The IMAP server {where} only accepts passwords over an encrypted "
                "connection: set security to SSL (port 993) or STARTTLS (port 143)."
            )
        return AuthError(
            f"The IMAP server {where} rejected the username or password for "
            f"{settings.username!r} (server said: {text}). Check them; some providers "
            "need an app password or IMAP access switched on."
        )
    if isinstance(exc, socket.gaierror):
        return ConfigError(
            f"The mail server name {settings.host!r} could not be found ({exc.strerror}). "
            "Check the IMAP host name for typos."
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsError(
            f"The TLS certificate of {where} is not trusted ({exc.verify_message}). "
            "Check that the host name matches the server's certificate, or give the CA "
            "certificate of a private server in the settings."
        )
    if isinstance(exc, ssl.SSLError):
        return TlsError(
            f"Could not start an encrypted (TLS) connection to {where} ({exc.reason or exc}). "
            "The port may not use that kind of security: port 993 is usually SSL, "
            "port 143 is STARTTLS or plain."
        )
    if isinstance(exc, ConnectionRefusedError):
        return TransientError(
            f"Nothing is listening on {where} (connection refused). Check the port "
            "(993 for SSL, 143 for STARTTLS) and that the server is running."
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return TransientError(
            f"{where} did not answer within {settings.timeout:g} seconds during {action}. "
            "Check the host and port and that no firewall blocks them; it will be retried."
        )
    if isinstance(exc, imap_exc.IMAPClientAbortError):
        return TransientError(
            f"The connection to {where} was dropped during {action} ({exc}). It will be retried."
        )
    if isinstance(exc, OSError):
        return TransientError(
            f"Network error talking to {where} during {action} ({exc}). It will be retried."
        )
    if isinstance(exc, imap_exc.CapabilityError):
        return NotSupported(f"The IMAP server {where} does not support {action}: {exc}.")
    if isinstance(exc, imap_exc.IMAPClientError):
        text = str(exc)
        upper = text.upper()
        if folder is not None and (
            "NONEXISTENT" in upper or "TRYCREATE" in upper or "DOESN'T EXIST" in upper
        ):
            return FolderNotFound(folder)
        if any(code in upper for code in ("[UNAVAILABLE]", "[INUSE]", "[LIMIT]", "[SERVERBUG]")):
            return TransientError(
                f"The IMAP server {where} is busy or failing ({text}) during {action}. "
                "It will be retried."
            )
        return ProtocolError(
            f"The IMAP server {where} refused {action} ({text}). If this repeats, "
            "report it with the server's name."
        )
    return ProtocolError(f"Unexpected error during {action} with {where}: {type(exc).__name__}")


class ImapProvider:
    """One IMAP connection. Use as a context manager, or call connect()/close().

    Methods take the folder name and select it when needed; the last selected folder
    is remembered so repeated calls on one folder cost no extra SELECT.
    """

    def __init__(self, settings: ImapSettings, password: str) -> None:
        self.settings = settings
        self._password = password
        self._client: IMAPClient | None = None
        self._selected: str | None = None
        self.capabilities: frozenset[str] = frozenset()
        self.condstore_enabled = False

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> ImapProvider:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:  # never shows the password
        s = self.settings
        return f"ImapProvider({s.username}@{s.host}:{s.port}, {s.security})"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if self.settings.ca_file:
            ctx.load_verify_locations(cafile=self.settings.ca_file)
        return ctx

    def open(self) -> None:
        """TCP (and TLS) only, without logging in. :meth:`connect` does both."""
        s = self.settings
        if s.security not in ("ssl", "starttls", "plain"):
            raise ConfigError(f"Unknown IMAP security {s.security!r}: use ssl, starttls or plain.")
        try:
            client = IMAPClient(
                s.host,
                port=s.port,
                ssl=s.security == "ssl",
                ssl_context=self.ssl_context() if s.security == "ssl" else None,
                timeout=s.timeout,
            )
        except Exception as exc:
            raise translate_error(exc, s, action="connecting") from exc
        quiet_protocol_log(client)
        try:
            if s.security == "starttls":
                if b"STARTTLS" not in client.capabilities():
                    raise ConfigError(
                        f"The IMAP server {_where(s)} does not offer STARTTLS. Use SSL "
                        "(usually port 993), or plain only on a trusted network."
                    )
                client.starttls(self.ssl_context())
        except Exception as exc:
            with contextlib.suppress(Exception):
                client.shutdown()
            raise translate_error(exc, s, action="starting TLS") from exc
        self._client = client

    def login(self) -> None:
        client = self._require_client()
        s = self.settings
        try:
            if b"LOGINDISABLED" in client.capabilities():
                raise ConfigError(
                    f"The IMAP server {_where(s)} refuses passwords on an unencrypted "
                    "connection: set security to SSL or STARTTLS."
                )
            if not self._password.isascii() and b"AUTH=PLAIN" in client.capabilities():
                client.plain_login(s.username, self._password)  # UTF-8 safe
            else:
                client.login(s.username, self._password)
            # imapclient caches the pre-login list; the post-login one is what matters.
            client._cached_capabilities = None
            client.normalise_times = False  # keep server time zones; converted to UTC below
            self.capabilities = frozenset(_text(c).upper() for c in client.capabilities())
            if "CONDSTORE" in self.capabilities:
                # ENABLE is only valid before the first SELECT (RFC 5161).
                client.enable("CONDSTORE")
                self.condstore_enabled = True
        except Exception as exc:
            self.close()
            raise translate_error(exc, s, action="logging in") from exc

    def connect(self) -> None:
        """Open the connection and log in. Raises AuthError, ConfigError, TransientError."""
        self.open()
        self.login()

    def close(self) -> None:
        client, self._client, self._selected = self._client, None, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            with contextlib.suppress(Exception):
                client.shutdown()

    def _require_client(self) -> IMAPClient:
        if self._client is None:
            raise TransientError("Not connected to the IMAP server: call connect() first.")
        return self._client

    @contextlib.contextmanager
    def _guard(self, action: str, folder: str | None = None) -> Iterator[IMAPClient]:
        client = self._require_client()
        try:
            yield client
        except ProviderError:
            raise
        except Exception as exc:
            err = translate_error(exc, self.settings, action=action, folder=folder)
            if isinstance(err, TransientError | ProtocolError):
                # The connection state is unknown now: the caller reconnects.
                self.close()
            raise err from exc

    def _ensure_selected(self, folder: str) -> None:
        if self._selected != folder:
            self.select(folder)

    def _refresh(self, folder: str) -> None:
        """Select ``folder``, or NOOP if it already is, so this session sees changes.

        Servers may not report expunges during FETCH/STORE/SEARCH (RFC 3501 §7.4.1):
        without the NOOP a UID SEARCH keeps listing messages other clients expunged.
        """
        if self._selected != folder:
            self.select(folder)
            return
        with self._guard("refreshing the folder", folder) as client:
            client.noop()

    def _require(self, capability: str, what: str) -> None:
        if capability not in self.capabilities:
            raise NotSupported(
                f"The IMAP server {_where(self.settings)} lacks {capability}, needed for {what}."
            )

    # -- folders ---------------------------------------------------------------------

    def list_folders(self) -> list[FolderInfo]:
        """All folders with their role (SPECIAL-USE first, then well-known names)."""
        with self._guard("listing folders") as client:
            raw = client.list_folders()
        entries: list[tuple[str, str, tuple[str, ...]]] = []
        for flags, delimiter, name in raw:
            attrs = tuple(_text(f) for f in flags)
            entries.append((_text(name), _text(delimiter) if delimiter else "", attrs))
        return assign_roles(entries)

    def folder_for_role(self, role: str, *, create: bool = False) -> str | None:
        """The folder that plays ``role``; with ``create``, make it when missing."""
        for info in self.list_folders():
            if info.role == role:
                return info.name
        if not create:
            return None
        name = _CREATE_NAMES.get(role)
        if name is None:
            raise ValueError(f"cannot create a folder for role {role!r}")
        with self._guard("creating a folder", name) as client:
            try:
                client.create_folder(name)
            except imap_exc.IMAPClientError as exc:
                # Someone else may have created it meanwhile ([ALREADYEXISTS]).
                if "EXISTS" not in str(exc).upper():
                    raise
            with contextlib.suppress(imap_exc.IMAPClientError):
                client.subscribe_folder(name)
        return name

    def select(self, folder: str) -> FolderStatus:
        """SELECT (read-write) ``folder``. HIGHESTMODSEQ is set when CONDSTORE is on."""
        self._selected = None
        with self._guard("opening a folder", folder) as client:
            resp = client.select_folder(folder)
            uidnext = resp.get(b"UIDNEXT")
            if uidnext is None:  # optional before IMAP4rev2; ask for it
                uidnext = client.folder_status(folder, ["UIDNEXT"]).get(b"UIDNEXT")
        self._selected = folder
        try:
            uidvalidity = int(resp[b"UIDVALIDITY"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(
                f"The IMAP server did not report UIDVALIDITY for {folder!r}; "
                "it cannot be synced safely."
            ) from exc
        modseq = resp.get(b"HIGHESTMODSEQ")
        return FolderStatus(
            uidvalidity=uidvalidity,
            uidnext=int(uidnext or 0),
            exists=int(resp.get(b"EXISTS", 0)),
            highestmodseq=int(modseq) if modseq is not None and self.condstore_enabled else None,
        )

    # -- reading ---------------------------------------------------------------------

    def fetch_new(
        self,
        folder: str,
        after_uid: int,
        *,
        batch_size: int = 500,
        max_size: int = 25 * 1024 * 1024,
        max_batch_bytes: int = 64 * 1024 * 1024,
    ) -> Iterator[list[FetchedMessage]]:
        """Messages with ``uid > after_uid``, ascending, in batches of at most ``batch_size``
        messages and ``max_batch_bytes`` bytes (by RFC822.SIZE; a bigger message comes alone).

        Bodies are fetched with BODY.PEEK (``\\Seen`` untouched). A message above
        ``max_size`` comes back header-only with ``truncated=True``.
        """
        self._refresh(folder)
        with self._guard("searching for new mail", folder) as client:
            found = client.search(["UID", f"{after_uid + 1}:*"])
        # n:* always matches the highest UID, even one below n (RFC 3501 §6.4.8).
        uids = sorted(u for u in found if u > after_uid)
        for chunk in _chunks(uids, batch_size):
            with self._guard("fetching mail", folder) as client:
                meta = _uid_fetch_meta(client, uid_set(chunk))
            for group in _by_bytes(chunk, meta, max_size, max_batch_bytes):
                batch = self._fetch_batch(folder, group, meta, max_size)
                if batch:
                    yield batch

    def _fetch_batch(
        self, folder: str, uids: Sequence[int], meta: dict[int, Any], max_size: int
    ) -> list[FetchedMessage]:
        with self._guard("fetching mail", folder) as client:
            small = [u for u in uids if meta[u].get(b"RFC822.SIZE", 0) <= max_size]
            big = [u for u in uids if meta[u].get(b"RFC822.SIZE", 0) > max_size]
            bodies = _uid_fetch_bodies(client, uid_set(small)) if small else {}
            heads = _uid_fetch(client, uid_set(big), ["BODY.PEEK[HEADER]"]) if big else {}
        out: list[FetchedMessage] = []
        for uid in uids:
            raw: bytes | None
            if uid in bodies:
                raw, truncated = bodies[uid], False
            elif uid in heads:
                raw, truncated = heads[uid].get(b"BODY[HEADER]"), True
            else:
                continue  # expunged between the steps
            m = meta[uid]
            out.append(
                FetchedMessage(
                    uid=uid,
                    flags=_flags(m.get(b"FLAGS")),
                    internaldate=_utc(m.get(b"INTERNALDATE")),
                    size=int(m.get(b"RFC822.SIZE", 0)),
                    raw=bytes(raw or b""),
                    truncated=truncated,
                )
            )
        return out

    def fetch_raw(self, folder: str, uid: int) -> FetchedMessage | None:
        """One full message, whatever its size (for "show original"); None if gone."""
        self._ensure_selected(folder)
        with self._guard("fetching a message", folder) as client:
            resp = _uid_fetch(client, str(int(uid)), [*_FETCH_META, "BODY.PEEK[]"])
        m = resp.get(uid)
        if m is None:
            return None
        return FetchedMessage(
            uid=uid,
            flags=_flags(m.get(b"FLAGS")),
            internaldate=_utc(m.get(b"INTERNALDATE")),
            size=int(m.get(b"RFC822.SIZE", 0)),
            raw=bytes(m.get(b"BODY[]") or b""),
            truncated=False,
        )

    def changed_flags(self, folder: str, since_modseq: int) -> list[FlagChange]:
        """Flags of messages changed after ``since_modseq`` (CONDSTORE ``CHANGEDSINCE``)."""
        self._require("CONDSTORE", "reading flag changes")
        self._refresh(folder)
        with self._guard("reading flag changes", folder) as client:
            resp = _uid_fetch(
                client, "1:*", ["FLAGS"], modifiers=[f"CHANGEDSINCE {int(since_modseq)}"]
            )
        return [
            FlagChange(uid=uid, flags=_flags(data.get(b"FLAGS")))
            for uid, data in sorted(resp.items())
            if b"FLAGS" in data
        ]

    def all_flags(self, folder: str, uids: Sequence[int] | None = None) -> list[FlagChange]:
        """Current flags of ``uids`` (or every message): the check without CONDSTORE."""
        self._refresh(folder)
        out: list[FlagChange] = []
        wanted = None if uids is None else set(uids)
        with self._guard("reading flags", folder) as client:
            if uids is None:
                sets = ["1:*"]
            else:
                sets = [uid_set(c) for c in _chunks(sorted(set(uids)), 5000)]
            for s in sets:
                resp = _uid_fetch(client, s, ["FLAGS"])
                out.extend(
                    FlagChange(uid=uid, flags=_flags(data.get(b"FLAGS")))
                    for uid, data in resp.items()
                    if b"FLAGS" in data and (wanted is None or uid in wanted)
                )
        out.sort(key=lambda c: c.uid)
        return out

    def list_uids(self, folder: str) -> set[int]:
        """Every UID in ``folder`` (``UID SEARCH ALL``), to find expunged messages."""
        self._refresh(folder)
        with self._guard("listing messages", folder) as client:
            return {int(u) for u in client.search("ALL")}

    def find_message_id(self, folder: str, message_id: str) -> list[int]:
        """UIDs in ``folder`` whose Message-ID is ``message_id`` (brackets optional)."""
        mid = message_id.strip()
        if mid.startswith("<") and mid.endswith(">"):
            mid = mid[1:-1]
        if not mid or any(c in mid for c in "\r\n\0"):
            raise ValueError("a Message-ID must be a non-empty single line")
        self._refresh(folder)
        with self._guard("searching by Message-ID", folder) as client:
            # No CHARSET argument: some Microsoft servers reject any CHARSET.
            criteria: list[Any] = ["HEADER", "Message-ID", f"<{mid}>".encode()]
            return sorted(int(u) for u in client.search(criteria))

    # -- writing ---------------------------------------------------------------------

    def set_seen(self, folder: str, uids: Sequence[int], seen: bool) -> None:
        if not uids:
            return
        self._ensure_selected(folder)
        with self._guard("changing the read flag", folder) as client:
            for chunk in _chunks(sorted(set(uids)), 5000):
                if seen:
                    client.add_flags(uid_set(chunk), [b"\\Seen"], silent=True)
                else:
                    client.remove_flags(uid_set(chunk), [b"\\Seen"], silent=True)

    def move(self, folder: str, uids: Sequence[int], dest: str) -> dict[int, int]:
        """Move ``uids`` to ``dest``; returns old→new UIDs when the server says (COPYUID)."""
        if not uids:
            return {}
        if "MOVE" not in self.capabilities and "UIDPLUS" not in self.capabilities:
            raise NotSupported(
                f"The IMAP server {_where(self.settings)} has neither MOVE nor UIDPLUS; "
                "moving would need a plain EXPUNGE, which can delete other people's "
                "messages marked for deletion, so Mailroom will not move mail there."
            )
        self._ensure_selected(folder)
        mapping: dict[int, int] = {}
        with self._guard("moving messages", dest) as client:
            for chunk in _chunks(sorted(set(uids)), 1000):
                ids = uid_set(chunk)
                self._pop_untagged("COPYUID")
                if "MOVE" in self.capabilities:
                    client.move(ids, dest)
                else:
                    client.copy(ids, dest)
                    client.add_flags(ids, [b"\\Deleted"], silent=True)
                    client.uid_expunge(ids)  # only these UIDs, never the whole folder
                mapping.update(_copyuid_map(self._pop_untagged("COPYUID")))
        return mapping

    def append(
        self,
        folder: str,
        raw: bytes,
        *,
        flags: Sequence[str] = ("\\Seen",),
        when: datetime | None = None,
    ) -> int | None:
        """APPEND ``raw`` to ``folder``; the new UID when the server reports APPENDUID."""
        with self._guard("saving a message", folder) as client:
            self._pop_untagged("APPENDUID")
            client.append(folder, raw, [f.encode() for f in flags], when)
            found = self._pop_untagged("APPENDUID")
        for item in reversed(found):
            parts = _text(item).split()
            if len(parts) == 2 and parts[1].isdigit():
                return int(parts[1])
        return None

    def _pop_untagged(self, key: str) -> list[Any]:
        # imaplib files response codes ([COPYUID …], [APPENDUID …]) of both tagged and
        # untagged OKs under their name; RFC 6851 sends MOVE's COPYUID untagged.
        client = self._require_client()
        return list(client._imap.untagged_responses.pop(key, []) or [])

    # -- waiting ---------------------------------------------------------------------

    def idle_wait(
        self,
        folder: str,
        timeout: float,
        *,
        interrupt: Callable[[], bool] | None = None,
        poll_seconds: float = 1.0,
    ) -> bool:
        """Wait in IDLE on ``folder`` until it changes or ``timeout`` seconds pass.

        Returns True when the server reported a change (new, expunged or re-flagged
        mail). IDLE is re-issued internally every :data:`IDLE_REISSUE_SECONDS`. With
        ``interrupt``, it is polled every ``poll_seconds`` and a True ends the wait
        early (returning False), so a watcher thread can stop promptly.
        """
        self._require("IDLE", "waiting for new mail")
        self._ensure_selected(folder)
        with self._guard("waiting for new mail", folder) as client:
            # Changes since the last command arrive with the next response: check first.
            _, pending = client.noop()
            if _has_change(pending):
                return True
            deadline = time.monotonic() + max(0.0, timeout)
            while True:
                client.idle()
                started = time.monotonic()
                changed = stopped = False
                try:
                    while not changed:
                        now = time.monotonic()
                        wait = min(deadline - now, started + IDLE_REISSUE_SECONDS - now)
                        if interrupt is not None:
                            if interrupt():
                                stopped = True
                                break
                            wait = min(wait, poll_seconds)
                        if wait <= 0:
                            break
                        changed = _has_change(client.idle_check(timeout=wait))
                finally:
                    _, rest = client.idle_done()
                if changed or _has_change(rest):
                    return True
                if stopped or time.monotonic() >= deadline:
                    return False


def _copyuid_map(entries: Sequence[Any]) -> dict[int, int]:
    out: dict[int, int] = {}
    for entry in entries:
        parts = _text(entry).split()
        if len(parts) != 3:
            continue
        try:
            old, new = parse_uid_set(parts[1]), parse_uid_set(parts[2])
        except ValueError:
            continue
        if len(old) == len(new):
            out.update(zip(old, new, strict=True))
    return out


def assign_roles(entries: Sequence[tuple[str, str, tuple[str, ...]]]) -> list[FolderInfo]:
    """Give each ``(name, delimiter, attributes)`` its role.

    SPECIAL-USE attributes win; a role no folder claims that way goes to the best
    well-known name (top-level folders before nested ones). Unselectable folders get none.
    """
    roles: dict[str, str] = {}
    selectable = [
        e for e in entries if not {a.lower() for a in e[2]} & {"\\noselect", "\\nonexistent"}
    ]
    for name, _delim, attrs in selectable:
        if name.upper() == "INBOX":
            roles[name] = "inbox"
            continue
        for attr in attrs:
            role = _ROLE_ATTRIBUTES.get(attr.lower())
            if role and role not in roles.values() and name not in roles:
                roles[name] = role
    taken = set(roles.values())
    for role, names in _ROLE_NAMES.items():
        if role in taken:
            continue
        best: tuple[int, int, str] | None = None
        for name, delim, _attrs in selectable:
            if name in roles:
                continue
            leaf = name.rsplit(delim, 1)[-1] if delim else name
            if leaf.lower() in names:
                rank = (name.count(delim) if delim else 0, names.index(leaf.lower()), name)
                if best is None or rank < best:
                    best = rank
        if best is not None:
            roles[best[2]] = role
            taken.add(role)
    return [
        FolderInfo(name=name, role=roles.get(name), delimiter=delim, attributes=attrs)
        for name, delim, attrs in entries
    ]


def test_connection(
    settings: ImapSettings, password: str, *, folders: Sequence[str] = ()
) -> ConnectionReport:
    """Check settings step by step; never raises. ``message`` tells a person what to do."""
    try:
        return _test_connection(settings, password, folders)
    except Exception as exc:  # the contract is "never raises"
        log.warning("IMAP settings check failed unexpectedly: %s", type(exc).__name__)
        return ConnectionReport(
            ok=False,
            step="unknown",
            message=f"Unexpected error while checking {_where(settings)}: "
            f"{type(exc).__name__}. Try again; if it repeats, report it.",
        )


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def _test_connection(
    settings: ImapSettings, password: str, folders: Sequence[str]
) -> ConnectionReport:
    try:
        socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return ConnectionReport(False, "dns", str(translate_error(exc, settings, action="dns")))
    provider = ImapProvider(settings, password)
    try:
        try:
            provider.open()
        except TlsError as exc:
            return ConnectionReport(False, "tls", str(exc))
        except ProviderError as exc:
            return ConnectionReport(False, "connect", str(exc))
        try:
            provider.login()
        except TlsError as exc:
            return ConnectionReport(False, "tls", str(exc))
        except ProviderError as exc:
            return ConnectionReport(False, "login", str(exc))
        try:
            infos = tuple(provider.list_folders())
        except ProviderError as exc:
            return ConnectionReport(False, "folders", str(exc))
        names = {i.name for i in infos}
        missing = [f for f in folders if f not in names]
        if missing:
            listed = ", ".join(sorted(names)[:30])
            return ConnectionReport(
                False,
                "folders",
                f"Folder(s) not found: {', '.join(repr(m) for m in missing)}. "
                f"Folders on the server: {listed}. Pick one of these.",
                infos,
            )
        roles = ", ".join(f"{i.role}: {i.name!r}" for i in infos if i.role and i.role != "inbox")
        return ConnectionReport(
            True,
            "folders",
            f"Connected to {_where(settings)} as {settings.username!r}: "
            f"{len(infos)} folders" + (f" ({roles})." if roles else "."),
            infos,
        )
    finally:
        provider.close()
