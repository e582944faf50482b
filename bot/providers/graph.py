"""Microsoft Graph mail provider (REST over ``requests``): plain data out, provider errors only.

Rules from the Graph docs (sync.md §1.3):

* Every request carries ``Prefer: IdType="ImmutableId"``, so a message keeps its id when it
  moves between folders (otherwise a move looks like delete + add).
* Mail is synced per folder with ``/me/mailFolders/{id}/messages/delta``: follow
  ``@odata.nextLink`` until a page carries ``@odata.deltaLink``; ``Prefer:
  odata.maxpagesize`` sets the page size; ``@removed`` rows are messages that left the folder.
* An expired delta token answers 410 Gone (or an error code ``syncStateNotFound``): that is
  :class:`DeltaExpired`, the caller's cue to start the folder again.
* 429 / 503 / 504 are retried after ``Retry-After`` (exponential backoff when absent), at
  most ``MAX_RETRIES`` times; a longer wait ends the run with TransientError.
* A 401 refreshes the access token once (through the shared TokenSource) and repeats.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

import requests

from bot.providers.errors import (
    AuthError,
    ConfigError,
    MessageRejected,
    ProtocolError,
    ProviderError,
    TransientError,
)
from bot.providers.oauth import REAUTH, TokenSource, VerifyingSession

log = logging.getLogger(__name__)

GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
IMMUTABLE_IDS = 'IdType="ImmutableId"'
MAX_RETRIES = 4
MAX_WAIT_SECONDS = 120.0
DELTA_SELECT = (
    "id,conversationId,internetMessageId,isRead,parentFolderId,receivedDateTime,"
    "lastModifiedDateTime,subject"
)
_EXPIRED_CODES = frozenset(
    {"syncstatenotfound", "syncstateinvalid", "resyncrequired", "invaliddeltatoken"}
)

#: Outlook allows 4 concurrent requests per app and mailbox (Graph throttling limits): every
#: client of one mailbox in this process shares these slots (sync, write-back and sends).
MAX_CONCURRENT = 4
_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def mailbox_slots(key: str) -> threading.BoundedSemaphore:
    with _SLOTS_LOCK:
        return _SLOTS.setdefault(key, threading.BoundedSemaphore(MAX_CONCURRENT))


#: Indirection so tests can record the waits instead of sleeping.
SLEEP: Callable[[float], None] = time.sleep

#: Folder roles and the well-known folder names Graph accepts in place of an id.
WELL_KNOWN = {"inbox": "inbox", "sent": "sentitems", "archive": "archive", "trash": "deleteditems"}
ROLE_OF = {v: k for k, v in WELL_KNOWN.items()}


class DeltaExpired(ProviderError):
    """The delta link is no longer valid (410 / syncStateNotFound): restart the folder."""


class NotFound(ProviderError):
    """The item does not exist (any more)."""


class FolderMissing(NotFound):
    """The folder does not exist in this mailbox (``ErrorFolderNotFound``): well-known
    folders such as ``archive`` can be absent; that is not "the message is gone"."""


#: sendMail with MIME is one request of at most ~4 MB of base64 (~3 MB of MIME); larger
#: messages go through a draft and attachment upload sessions (3 MB to 150 MB each).
SENDMAIL_MIME_MAX = 3 * 1024 * 1024
UPLOAD_CHUNK = 12 * 327_680  # 3.75 MiB: a multiple of 320 KiB, as upload sessions require
ATTACHMENT_MAX = 150 * 1024 * 1024


@dataclass(frozen=True)
class GraphFolder:
    """A mail folder to offer: ``name`` is its display name ("Parent / Child" for a child
    folder); ``well_known`` is set for Inbox, Sent Items and Archive."""

    id: str
    name: str
    well_known: str | None = None


LISTED_WELL_KNOWN = ("inbox", "sentitems", "archive")
MAX_LISTED_FOLDERS = 300  # per listing (top level, or one folder's children)
FOLDER_SELECT = "id,displayName,childFolderCount"


@dataclass(frozen=True)
class DeltaPage:
    changed: list[dict[str, Any]]  # message resources (the $select fields)
    removed: list[str]  # ids that left the folder
    next_link: str | None
    delta_link: str | None


def _error(resp: requests.Response) -> tuple[str, str]:
    try:
        err = resp.json().get("error") or {}
        return str(err.get("code") or ""), str(err.get("message") or "")[:200]
    except (ValueError, AttributeError):
        return "", resp.text[:200]


class GraphClient:
    """The signed-in user's mailbox (``/me``), or with ``mailbox`` another mailbox the
    signed-in user (delegated ``Mail.ReadWrite.Shared`` / ``Mail.Send.Shared``) or the app
    (application permissions) may use: every request goes to ``/users/{mailbox}/…``."""

    def __init__(
        self,
        tokens: TokenSource,
        *,
        base_url: str | None = None,
        ca_file: str | None = None,
        timeout: float = 60.0,
        page_size: int = 50,
        mailbox: str | None = None,
        slot_key: str | None = None,
    ) -> None:
        self._tokens = tokens
        self._slots = mailbox_slots(slot_key or f"{base_url}|{mailbox}|{id(tokens)}")
        self.root = f"users/{quote(mailbox, safe='@')}" if mailbox else "me"
        self.base_url = (base_url or GRAPH_BASE_URL).rstrip("/")
        self._session = VerifyingSession(ca_file or True)
        self._timeout = timeout
        self.page_size = page_size

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("https://", "http://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        what: str,
        prefer: tuple[str, ...] = (),
        retry: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """``retry=False`` for requests that are not idempotent (sending): a 429/5xx then ends
        in TransientError at once, and the caller re-checks before trying again."""
        url = self._url(path_or_url)
        attempt = 0
        refreshed = False
        token = self._tokens.access_token()
        extra = dict(kwargs.pop("headers", None) or {})
        while True:
            headers = dict(extra)
            headers["Authorization"] = f"Bearer {token}"
            headers["Prefer"] = ", ".join((IMMUTABLE_IDS, *prefer))
            try:
                with self._slots:  # at most MAX_CONCURRENT in flight for this mailbox
                    resp = self._session.request(
                        method, url, headers=headers, timeout=self._timeout, **kwargs
                    )
            except requests.RequestException as exc:
                raise TransientError(
                    f"Microsoft Graph could not be reached ({what}: {type(exc).__name__})."
                ) from exc
            if resp.status_code == 401 and not refreshed:
                token = self._tokens.refresh(rejected=token)
                refreshed = True
                continue
            if resp.status_code in (429, 503, 504):
                if not retry:
                    raise TransientError(
                        f"Microsoft Graph answered HTTP {resp.status_code} to {what}; it may "
                        "or may not have been done, so it is checked before another try."
                    )
                delay = self._retry_after(resp, attempt)
                if attempt < MAX_RETRIES and delay <= MAX_WAIT_SECONDS:
                    log.info("Graph %s: HTTP %s, retrying in %.0f s", what, resp.status_code, delay)
                    SLEEP(delay)
                    attempt += 1
                    continue
                raise TransientError(
                    f"Microsoft Graph is throttling this mailbox ({what}: HTTP "
                    f"{resp.status_code}); the sync will retry later."
                )
            if resp.status_code < 400:
                return resp
            raise self._translate(resp, what)

    @staticmethod
    def _retry_after(resp: requests.Response, attempt: int) -> float:
        value = resp.headers.get("Retry-After")
        try:
            if value is not None:
                return max(0.0, float(value))
        except ValueError:
            pass
        return float(2**attempt) + random.uniform(0, 1)  # jitter: workers do not retry in step

    @staticmethod
    def _translate(resp: requests.Response, what: str) -> ProviderError:
        code, message = _error(resp)
        status = resp.status_code
        if code == "MailboxNotEnabledForRESTAPI" or code == "MailboxNotSupportedForRESTAPI":
            # Comes with 404, so it is checked before the 404 branch.
            return ConfigError(
                "This Microsoft 365 user has no Exchange Online mailbox (no Exchange Online "
                f"licence, or the mailbox is on-premises) ({code}). Assign a licence, or "
                "connect a shared mailbox through a licensed user (docs/oauth-providers.md)."
            )
        if status == 413 or code == "ErrorMessageSizeExceeded":
            return MessageRejected(
                f"Microsoft 365 refused {what}: the message is too large ({code or 'HTTP 413'}).",
                code=status,
            )
        if status == 410 or code.lower() in _EXPIRED_CODES:
            return DeltaExpired(f"The Graph delta link expired ({what}): resync the folder.")
        if status == 401:
            return AuthError(f"Microsoft 365 rejected the access token: the account {REAUTH}.")
        if status == 403 and (what in ("sendMail", "send") or code == "ErrorSendAsDenied"):
            # Reconnecting does not help: Send As missing, or sending blocked for the mailbox.
            return MessageRejected(
                f"Microsoft 365 refused to send ({code or 'forbidden'}): {message} (a shared "
                "mailbox needs Send As for the connecting user).",
                code=status,
            )
        if status == 403:
            return AuthError(
                f"Microsoft 365 refused {what} ({code or 'forbidden'}): the account {REAUTH} "
                "and the admin must consent to Mail.ReadWrite and Mail.Send."
            )
        if status == 404 and code == "ErrorFolderNotFound":
            return FolderMissing(f"The folder does not exist in this mailbox ({what}).")
        if status == 404:
            return NotFound(f"Not found in the mailbox ({what}: {code or 'ItemNotFound'}).")
        if status >= 500:
            return TransientError(f"Microsoft Graph failed ({what}: HTTP {status} {code}).")
        if what == "sendMail":
            return MessageRejected(
                f"Microsoft 365 refused the message: {code} {message}", code=status
            )
        if code == "MailboxNotEnabledForRESTAPI":
            return ConfigError(
                "This mailbox has no Exchange Online licence (MailboxNotEnabledForRESTAPI)."
            )
        return ProtocolError(
            f"Microsoft Graph answered HTTP {status} to {what} ({code}: {message})."
        )

    # -- reading ----------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", self.root, what="me", params={"$select": "id,mail,userPrincipalName"}
        ).json()
        return result

    def folder(self, folder: str) -> dict[str, Any]:
        """A folder by id or well-known name (``inbox``, ``sentitems``, ``archive``...)."""
        path = f"{self.root}/mailFolders/{quote(folder, safe='')}"
        result: dict[str, Any] = self.request("GET", path, what="mailFolders.get").json()
        return result

    def _folder_pages(self, path: str) -> list[dict[str, Any]]:
        url: str | None = f"{path}?$top=100&$select={FOLDER_SELECT}"
        found: list[dict[str, Any]] = []
        while url and len(found) < MAX_LISTED_FOLDERS:
            data = self.request("GET", url, what="mailFolders.list").json()
            found.extend(f for f in data.get("value") or [] if f.get("id"))
            url = data.get("@odata.nextLink")
        return found[:MAX_LISTED_FOLDERS]

    def list_folders(self, *, max_parents: int = 20) -> list[GraphFolder]:
        """Top-level folders and the direct children of up to ``max_parents`` of them (custom
        folders usually sit under Inbox). v1.0 folders carry no well-known name, so Inbox,
        Sent Items and Archive are looked up by theirs (a missing one is skipped)."""
        well_known: dict[str, str] = {}
        for name in LISTED_WELL_KNOWN:
            try:
                well_known[str(self.folder(name)["id"])] = name
            except NotFound:
                continue
        top = self._folder_pages(f"{self.root}/mailFolders")
        out = [
            GraphFolder(str(f["id"]), str(f.get("displayName") or ""), well_known.get(f["id"]))
            for f in top
        ]
        parents = [f for f in top if int(f.get("childFolderCount") or 0) > 0][:max_parents]
        for parent in parents:
            path = f"{self.root}/mailFolders/{quote(str(parent['id']), safe='')}/childFolders"
            out.extend(
                GraphFolder(
                    str(c["id"]),
                    f"{parent.get('displayName') or ''} / {c.get('displayName') or ''}",
                    well_known.get(c["id"]),
                )
                for c in self._folder_pages(path)
            )
        return out

    def delta(
        self, folder: str, link: str | None = None, *, since: str | None = None
    ) -> Iterator[DeltaPage]:
        """Pages of changes in ``folder`` since ``link`` (a saved next/delta link), or a
        first round when ``link`` is None: the whole folder, or with ``since`` (ISO 8601 UTC)
        only mail received since then (delta's ``$filter=receivedDateTime ge``; later rounds
        keep that bound, as the filter lives in the links). The last page has ``delta_link``."""
        url = link or (
            f"{self.root}/mailFolders/{quote(folder, safe='')}/messages/delta?$select={DELTA_SELECT}"
            + (f"&$filter=receivedDateTime+ge+{since}" if since else "")
        )
        while True:
            data = self.request(
                "GET",
                url,
                what="messages.delta",
                prefer=(f"odata.maxpagesize={self.page_size}",),
            ).json()
            changed: list[dict[str, Any]] = []
            removed: list[str] = []
            for item in data.get("value") or []:
                if "@removed" in item:
                    removed.append(str(item["id"]))
                elif item.get("id"):
                    changed.append(item)
            next_link = data.get("@odata.nextLink")
            delta_link = data.get("@odata.deltaLink")
            if not next_link and not delta_link:
                raise ProtocolError("A Graph delta page had neither a next nor a delta link.")
            yield DeltaPage(changed, removed, next_link, delta_link)
            if delta_link:
                return
            url = str(next_link)

    def mime(self, message_id: str) -> bytes | None:
        """The message's RFC 822 bytes (``/$value``); None when it is gone."""
        try:
            resp = self.request(
                "GET",
                f"{self.root}/messages/{quote(message_id, safe='')}/$value",
                what="messages.$value",
            )
        except NotFound:
            return None
        return resp.content

    def find_internet_message_id(self, folder: str, message_id: str) -> list[str]:
        """Ids of messages in ``folder`` whose Internet Message-ID is ``<message_id>``."""
        mid = "<" + message_id.strip().strip("<>") + ">"
        literal = mid.replace("'", "''")  # OData string literal
        resp = self.request(
            "GET",
            f"{self.root}/mailFolders/{quote(folder, safe='')}/messages",
            what="messages.list",
            params={"$filter": f"internetMessageId eq '{literal}'", "$select": "id"},
        )
        return [str(m["id"]) for m in resp.json().get("value") or []]

    # -- writing ----------------------------------------------------------------------

    def set_read(self, message_id: str, read: bool) -> bool:
        """False when the message is gone (nothing to change)."""
        try:
            self.request(
                "PATCH",
                f"{self.root}/messages/{quote(message_id, safe='')}",
                what="messages.update",
                json={"isRead": read},
            )
        except NotFound:
            return False
        return True

    def move(self, message_id: str, destination: str) -> dict[str, Any] | None:
        """Move to a folder id or well-known name; the moved message, or None when gone."""
        try:
            resp = self.request(
                "POST",
                f"{self.root}/messages/{quote(message_id, safe='')}/move",
                what="messages.move",
                json={"destinationId": destination},
            )
        except FolderMissing:
            raise  # the destination is missing, the message is still where it was
        except NotFound:
            return None
        result: dict[str, Any] = resp.json()
        return result

    def send_mime(self, raw: bytes) -> None:
        """Send the MIME message; Exchange saves it in Sent Items itself (later: a 202 only
        says "accepted"), so the caller must not save another copy. Recipients are the To,
        Cc and Bcc headers (Graph has no envelope; Exchange drops Bcc from delivered copies).

        Up to ``SENDMAIL_MIME_MAX``: one ``sendMail``, which must answer 202 (a 200 has been
        seen for large MIME that was never sent). Larger: a draft from the MIME without its
        attachments, each attachment through an upload session, then ``send``. Never
        retried here on 429/5xx: the outbox re-checks Sent Items before another try."""
        if len(raw) <= SENDMAIL_MIME_MAX:
            resp = self.request(
                "POST",
                f"{self.root}/sendMail",
                what="sendMail",
                retry=False,
                data=base64.b64encode(raw),
                headers={"Content-Type": "text/plain"},
            )
            if resp.status_code != 202:
                raise TransientError(
                    f"Microsoft Graph answered HTTP {resp.status_code} to sendMail instead of "
                    "202: not known to be sent; Sent Items is checked before another try."
                )
            return
        self._send_large(raw)

    def _send_large(self, raw: bytes) -> None:
        body, files = split_attachments(raw)
        if len(body) > SENDMAIL_MIME_MAX:
            raise MessageRejected(
                "Microsoft 365 takes at most 3 MB of message text (attachments apart): "
                "shorten the message.",
                code=413,
            )
        for name, _ctype, data in files:
            if len(data) > ATTACHMENT_MAX:
                raise MessageRejected(
                    f"{name} is over Microsoft 365's 150 MB limit for one attachment.", code=413
                )
        draft = self.request(
            "POST",
            f"{self.root}/messages",
            what="messages.create",
            data=base64.b64encode(body),
            headers={"Content-Type": "text/plain"},
        ).json()
        did = quote(str(draft["id"]), safe="")
        try:
            for name, ctype, data in files:
                session = self.request(
                    "POST",
                    f"{self.root}/messages/{did}/attachments/createUploadSession",
                    what="attachments.createUploadSession",
                    json={
                        "AttachmentItem": {
                            "attachmentType": "file",
                            "name": name,
                            "size": len(data),
                            "contentType": ctype,
                        }
                    },
                ).json()
                self._upload(str(session["uploadUrl"]), data)
        except ProviderError:
            try:  # leave no half-built draft behind
                self.request("DELETE", f"{self.root}/messages/{did}", what="messages.delete")
            except ProviderError:
                log.warning("could not delete an unsent draft after a failed upload")
            raise
        resp = self.request("POST", f"{self.root}/messages/{did}/send", what="send", retry=False)
        if resp.status_code != 202:
            raise TransientError(
                f"Microsoft Graph answered HTTP {resp.status_code} to send instead of 202."
            )

    def _upload(self, url: str, data: bytes) -> None:
        # The upload URL carries its own credential: no Authorization header (Graph refuses it).
        total = len(data)
        for start in range(0, total, UPLOAD_CHUNK):
            chunk = data[start : start + UPLOAD_CHUNK]
            headers = {
                "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{total}",
                "Content-Type": "application/octet-stream",
            }
            try:
                resp = self._session.put(url, data=chunk, headers=headers, timeout=self._timeout)
            except requests.RequestException as exc:
                raise TransientError(
                    f"An attachment upload to Microsoft Graph failed ({type(exc).__name__})."
                ) from exc
            if resp.status_code >= 400:
                raise self._translate(resp, "attachment upload")


def split_attachments(raw: bytes) -> tuple[bytes, list[tuple[str, str, bytes]]]:
    """The MIME without its attachment parts, and those parts as (name, type, bytes)."""
    msg = message_from_bytes(raw, policy=policy.default)
    files: list[tuple[str, str, bytes]] = []

    def strip(part: EmailMessage) -> None:
        if not part.is_multipart():
            return
        keep: list[Any] = []
        for sub in part.iter_parts():
            if isinstance(sub, EmailMessage) and sub.get_content_disposition() == "attachment":
                data = sub.get_payload(decode=True)
                files.append(
                    (
                        sub.get_filename() or "attachment",
                        sub.get_content_type(),
                        data if isinstance(data, bytes) else b"",
                    )
                )
            else:
                if isinstance(sub, EmailMessage):
                    strip(sub)
                keep.append(sub)
        part.set_payload(keep)

    assert isinstance(msg, EmailMessage)
    strip(msg)
    return msg.as_bytes(policy=policy.SMTP), files


# -- push: change notification subscriptions (issue 18, point 3; bot/sync/push.py) ---------

#: Outlook message subscriptions without resource data last at most 10,080 minutes; ask a
#: little less so clock skew never makes Graph refuse the expiry.
SUBSCRIPTION_MINUTES = 10_000


@dataclass(frozen=True)
class Subscription:
    id: str
    expires_at: datetime


def _subscription(data: dict[str, Any]) -> Subscription:
    try:
        when = datetime.fromisoformat(str(data["expirationDateTime"]).replace("Z", "+00:00"))
        return Subscription(str(data["id"]), when.astimezone(UTC))
    except (KeyError, ValueError) as exc:
        raise ProtocolError("Microsoft Graph answered a subscription without id/expiry.") from exc


def _expiry(now: datetime | None) -> str:
    when = (now or datetime.now(UTC)) + timedelta(minutes=SUBSCRIPTION_MINUTES)
    return when.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def create_subscription(
    client: GraphClient,
    *,
    resource: str,
    notification_url: str,
    lifecycle_url: str,
    client_state: str,
    now: datetime | None = None,
) -> Subscription:
    """``POST /subscriptions``. Graph validates ``notification_url`` (and the lifecycle URL)
    before answering, so Mailroom's endpoint must already answer the validationToken."""
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": notification_url,
        "lifecycleNotificationUrl": lifecycle_url,
        "resource": resource,
        "expirationDateTime": _expiry(now),
        "clientState": client_state,
        "latestSupportedTlsVersion": "v1_2",
    }
    resp = client.request("POST", "subscriptions", what="subscriptions.create", json=body)
    return _subscription(resp.json())


def renew_subscription(
    client: GraphClient, subscription_id: str, *, now: datetime | None = None
) -> Subscription:
    """``PATCH /subscriptions/{id}``; NotFound when Graph removed it (then create anew)."""
    path = f"subscriptions/{quote(subscription_id, safe='')}"
    body = {"expirationDateTime": _expiry(now)}
    resp = client.request("PATCH", path, what="subscriptions.update", json=body)
    return _subscription(resp.json())


def delete_subscription(client: GraphClient, subscription_id: str) -> None:
    """``DELETE /subscriptions/{id}``; one Graph already removed counts as deleted."""
    path = f"subscriptions/{quote(subscription_id, safe='')}"
    try:
        client.request("DELETE", path, what="subscriptions.delete")
    except NotFound:
        pass
