"""A fake Microsoft Graph v1.0 mail API, following the public reference:

``GET /me``, ``GET /me/mailFolders/{id|well-known name}``, ``GET /me/mailFolders`` and
``GET /me/mailFolders/{id}/childFolders`` (``$top``, ``@odata.nextLink``; custom folders
from :meth:`FakeGraph.add_folder`),
``GET /me/mailFolders/{id}/messages/delta`` (first round lists the folder; later rounds
report changes and ``@removed`` rows; ``Prefer: odata.maxpagesize`` with the default of 10;
``@odata.nextLink`` pages then one ``@odata.deltaLink``; an expired token → 410 Gone
``SyncStateNotFound``), ``GET /me/mailFolders/{id}/messages?$filter=internetMessageId eq
'<id>'``, ``GET /me/messages/{id}``, ``GET /me/messages/{id}/$value`` (MIME),
``PATCH /me/messages/{id}``, ``POST /me/messages/{id}/move`` (201), ``POST /me/sendMail``
with a base64 MIME body as ``text/plain`` (202; a copy lands in Sent Items).

Ids: with ``Prefer: IdType="ImmutableId"`` a message keeps its id across moves; without it
the fake hands out REST ids that embed the folder, so they change on every move, as Graph's
do. 401 ``InvalidAuthenticationToken`` for a bad bearer token.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses
from typing import Any
from urllib.parse import quote, unquote

from tests.fakes import FakeHttpServer, Request, Response
from tests.fakes.oauth_server import FakeOAuth

FOLDERS = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "archive": "Archive",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
}


SENDMAIL_MAX = 4 * 1024 * 1024  # request body limit of sendMail / MIME drafts (base64)


def _parse(raw: bytes, pol: Any = policy.compat32) -> Message:
    return message_from_bytes(raw, policy=pol)


def _recipients(raw: bytes) -> list[str]:
    """Graph has no envelope for MIME sends: To, Cc and Bcc headers are the recipients."""
    parsed = _parse(raw)
    fields = [str(v) for k in ("To", "Cc", "Bcc") for v in parsed.get_all(k) or []]
    return [a.lower() for _n, a in getaddresses(fields) if "@" in a]


def _without_bcc(raw: bytes) -> bytes:
    msg = _parse(raw)
    del msg["Bcc"]
    return msg.as_bytes()


def _since(flt: str | None) -> datetime | None:
    match = re.fullmatch(r"receivedDateTime ge (\S+)", (flt or "").strip())
    if match is None:
        return None
    return datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))


def graph_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response.json(
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"request-id": "fake", "date": "2024-01-01T00:00:00"},
            }
        },
        status,
        headers,
    )


def _not_found() -> Response:
    return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")


@dataclass
class Item:
    id: str  # immutable
    folder: str  # folder id
    raw: bytes
    internet_message_id: str
    conversation_id: str
    subject: str
    received: datetime
    is_read: bool = False
    version: int = 0


@dataclass
class Box:
    email: str
    folder_ids: dict[str, str] = field(default_factory=dict)  # well-known → id
    items: dict[str, Item] = field(default_factory=dict)
    log: list[tuple[int, str, str]] = field(default_factory=list)  # (seq, folder id, item id)
    seq: int = 0
    generation: int = 0  # bumping it expires every delta token
    rounds: dict[str, list[str]] = field(default_factory=dict)  # skiptoken → remaining ids
    sent: list[Item] = field(default_factory=list)
    custom: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id → name, parent
    missing: set[str] = field(default_factory=set)  # well-known folders this mailbox lacks
    pending_sent: list[bytes] = field(default_factory=list)  # accepted, Sent copy not filed yet
    attachments: dict[str, list[tuple[str, str, bytes]]] = field(default_factory=dict)  # drafts


class FakeGraph:
    def __init__(self, oauth: FakeOAuth) -> None:
        self.oauth = oauth
        self.boxes: dict[str, Box] = {}
        self.subscriptions: dict[str, dict[str, Any]] = {}  # push: see the section at the end
        self.notifications: list[tuple[str, dict[str, Any], int]] = []  # (url, body, status)
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # subscription expiry
        self._ids = itertools.count(1)
        self._clock = itertools.count(0)
        self._epoch = datetime.now(UTC) - timedelta(days=20)  # recent: within first-sync bounds
        self.server = FakeHttpServer(self._handle)
        # What left through sendMail / send: (recipient, their copy: no Bcc header).
        self.delivered: list[tuple[str, bytes]] = []
        self.sent_lag = False  # True: Sent Items copies appear only on file_sent() (as in EXO)
        self.unlicensed: set[str] = set()  # users without an Exchange Online mailbox
        self.smtp: dict[str, str] = {}  # UPN → primary SMTP address (`mail`), when they differ
        # shared mailbox → users with FullAccess + SendAs on it
        self.full_access: dict[str, set[str]] = {}
        # app client id → mailboxes its application access policy allows
        self.app_mailboxes: dict[str, set[str]] = {}
        self._uploads: dict[str, tuple[Box, str, str, str, int, bytearray]] = {}

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1.0"

    def close(self) -> None:
        self.server.close()

    # -- mailbox side -----------------------------------------------------------------

    def box(self, email: str) -> Box:
        if email not in self.boxes:
            box = Box(email)
            for name in FOLDERS:
                box.folder_ids[name] = "AAMkFolder" + base64.urlsafe_b64encode(
                    f"{email}/{name}".encode()
                ).decode().rstrip("=")
            self.boxes[email] = box
        return self.boxes[email]

    def _touch(self, box: Box, item: Item, *folders: str) -> None:
        item.version += 1
        for folder in folders or (item.folder,):
            box.seq += 1
            box.log.append((box.seq, folder, item.id))

    def deliver(
        self,
        email: str,
        raw: bytes,
        folder: str = "inbox",
        *,
        is_read: bool = False,
        received: datetime | None = None,
    ) -> str:
        box = self.box(email)
        parsed = message_from_bytes(raw, policy=policy.compat32)
        imid = str(parsed.get("Message-ID", "")).strip()
        refs = re.findall(
            r"<[^>]+>", f"{parsed.get('In-Reply-To', '')} {parsed.get('References', '')}"
        )
        conv = next(
            (i.conversation_id for i in box.items.values() if i.internet_message_id in refs), None
        )
        iid = f"AAkALgImm{next(self._ids):06d}=="
        item = Item(
            iid,
            self._folder_id(box, folder) or box.folder_ids[folder],
            raw,
            imid,
            conv or f"AAQkConv{next(self._ids):06d}=",
            str(parsed.get("Subject", "")),
            received or self._epoch + timedelta(minutes=next(self._clock)),
            is_read,
        )
        box.items[iid] = item
        self._touch(box, item)
        self.notify(email, folder, iid, "created")
        return iid

    def move_item(self, email: str, iid: str, folder: str) -> None:
        box = self.box(email)
        item = box.items[iid]
        old = item.folder
        item.folder = box.folder_ids.get(folder, folder)
        self._touch(box, item, old, item.folder)

    def set_read_item(self, email: str, iid: str, read: bool) -> None:
        box = self.box(email)
        box.items[iid].is_read = read
        self._touch(box, box.items[iid])

    def delete_item(self, email: str, iid: str) -> None:
        box = self.box(email)
        item = box.items.pop(iid)
        self._touch(box, item)

    def file_sent(self, email: str) -> None:
        """Exchange files the Sent Items copies of accepted sends (asynchronously, later)."""
        box = self.box(email)
        for raw in box.pending_sent:
            self.deliver(email, raw, "sentitems", is_read=True)
        box.pending_sent.clear()

    def expire_delta_tokens(self, email: str) -> None:
        self.box(email).generation += 1

    def folder_of(self, email: str, iid: str) -> str | None:
        box = self.box(email)
        item = box.items.get(iid)
        if item is None:
            return None
        return next((k for k, v in box.folder_ids.items() if v == item.folder), item.folder)

    # -- custom folders (mailFolders.list / childFolders) -------------------------------

    def add_folder(self, email: str, name: str, parent: str | None = None) -> str:
        """A folder of the user's own, top-level or under ``parent`` (well-known name or id)."""
        box = self.box(email)
        parent_id = self._folder_id(box, parent) if parent else None
        fid = "AAMkCustom" + base64.urlsafe_b64encode(f"{email}/{name}".encode()).decode()
        box.custom[fid] = (name, parent_id)
        return fid

    def _folder_resource(self, box: Box, fid: str) -> dict[str, Any]:
        wk = next((k for k, v in box.folder_ids.items() if v == fid), None)
        name, parent = (FOLDERS[wk], None) if wk else box.custom[fid]
        return {
            "id": fid,
            "displayName": name,
            "parentFolderId": parent or "AAMkRoot",
            "childFolderCount": sum(1 for _n, p in box.custom.values() if p == fid),
            "totalItemCount": sum(1 for i in box.items.values() if i.folder == fid),
            "unreadItemCount": sum(
                1 for i in box.items.values() if i.folder == fid and not i.is_read
            ),
            "isHidden": False,
        }

    def _folders(self, box: Box, parent: str | None, req: Request, path: str) -> Response:
        ids = list(box.folder_ids.values()) if parent is None else []
        ids += [k for k, (_n, p) in box.custom.items() if p == parent]
        top = int(req.arg("$top", "10") or 10)
        skip = int(req.arg("$skip", "0") or 0)
        body: dict[str, Any] = {
            "value": [self._folder_resource(box, f) for f in ids[skip : skip + top]]
        }
        if skip + top < len(ids):
            body["@odata.nextLink"] = f"{self.base_url}{path}?$top={top}&$skip={skip + top}"
        return Response.json(body)

    # -- ids ----------------------------------------------------------------------------

    @staticmethod
    def _immutable(req: Request) -> bool:
        return 'idtype="immutableid"' in req.headers.get("prefer", "").lower()

    def _out_id(self, item: Item, immutable: bool) -> str:
        if immutable:
            return item.id
        return "AAMkRest" + base64.urlsafe_b64encode(f"{item.id}|{item.folder}".encode()).decode()

    def _resolve(self, box: Box, ident: str) -> Item | None:
        if ident.startswith("AAMkRest"):
            try:
                iid, folder = base64.urlsafe_b64decode(ident[8:]).decode().split("|")
            except (ValueError, binascii.Error):
                return None
            item = box.items.get(iid)
            return item if item is not None and item.folder == folder else None  # stale REST id
        return box.items.get(ident)

    def _folder_id(self, box: Box, ident: str) -> str | None:
        if ident.lower() in box.missing or box.folder_ids.get(ident.lower()) in box.missing:
            return None
        if ident.lower() in box.folder_ids:
            return box.folder_ids[ident.lower()]
        known = ident in box.folder_ids.values() or ident in box.custom
        return ident if known else None

    def _resource(self, item: Item, immutable: bool, select: str | None = None) -> dict[str, Any]:
        full = {
            "@odata.etag": f'W/"CQAAAB{item.version}"',
            "id": self._out_id(item, immutable),
            "createdDateTime": item.received.isoformat().replace("+00:00", "Z"),
            "lastModifiedDateTime": item.received.isoformat().replace("+00:00", "Z"),
            "changeKey": f"CQAAAB{item.version}",
            "receivedDateTime": item.received.isoformat().replace("+00:00", "Z"),
            "subject": item.subject,
            "isRead": item.is_read,
            "parentFolderId": item.folder,
            "conversationId": item.conversation_id,
            "internetMessageId": item.internet_message_id,
        }
        if select:
            keep = {s.strip() for s in select.split(",")} | {"id"}
            full = {k: v for k, v in full.items() if k in keep or k.startswith("@")}
        return full

    # -- HTTP -------------------------------------------------------------------------

    def _handle(self, req: Request) -> Response:
        if req.path.startswith("/upload/") and req.method == "PUT":
            return self._upload(req)
        who = self.oauth.who(req.headers.get("authorization"))
        if who is None:
            return graph_error(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        if req.path.startswith("/v1.0/subscriptions"):
            return self._subscriptions(who, req)
        if req.path.startswith("/v1.0/me") and who.startswith("app:"):
            return graph_error(
                400, "BadRequest", "/me request is only valid with delegated authentication flow."
            )
        if req.path.startswith("/v1.0/me"):
            owner, rest = who, req.path[len("/v1.0/me") :]
        elif req.path.startswith("/v1.0/users/"):
            owner, _s, rest = req.path[len("/v1.0/users/") :].partition("/")
            owner = unquote(owner).lower()
            rest = "/" + rest
            denied = self._shared_denied(req, who, owner)
            if denied is not None:
                return denied
        else:
            return graph_error(400, "BadRequest", "Resource not found for the segment.")
        if owner in self.unlicensed:
            return graph_error(
                404,
                "MailboxNotEnabledForRESTAPI",
                "REST API is not yet supported for this mailbox.",
            )
        box = self.box(owner)
        parts = [unquote(p) for p in rest.split("/") if p]
        prefix = req.path[len("/v1.0") : len(req.path) - len(rest)]  # /me or /users/{id}
        immutable = self._immutable(req)
        if not parts and req.method == "GET":
            return Response.json(
                {
                    "id": "user-" + owner,
                    "mail": self.smtp.get(owner, owner),
                    "userPrincipalName": owner,
                    "displayName": owner,
                }
            )
        if parts == ["mailFolders"] and req.method == "GET":
            return self._folders(box, None, req, f"{prefix}/mailFolders")
        if parts[0] == "mailFolders" and len(parts) >= 2:
            folder = self._folder_id(box, parts[1])
            if folder is None:
                return graph_error(
                    404,
                    "ErrorFolderNotFound",
                    "The specified folder could not be found in the store.",
                )
            if len(parts) == 2 and req.method == "GET":
                return Response.json(self._folder_resource(box, folder))
            if parts[2:] == ["childFolders"] and req.method == "GET":
                path = f"{prefix}/mailFolders/{quote(folder, safe='')}/childFolders"
                return self._folders(box, folder, req, path)
            if parts[2:] == ["messages", "delta"] and req.method == "GET":
                return self._delta(box, parts[1], folder, req, immutable)
            if parts[2:] == ["messages"] and req.method == "GET":
                return self._list(box, folder, req, immutable)
            return _not_found()
        if parts[0] == "sendMail" and req.method == "POST":
            return self._send(box, req)
        if parts == ["messages"] and req.method == "POST":
            return self._create_draft(box, req, immutable)
        if parts[0] == "messages" and len(parts) >= 2:
            item = self._resolve(box, parts[1])
            if item is None:
                return _not_found()
            if len(parts) == 2 and req.method == "GET":
                return Response.json(self._resource(item, immutable, req.arg("$select")))
            if len(parts) == 2 and req.method == "DELETE":
                box.items.pop(item.id, None)
                self._touch(box, item)
                return Response(204, b"")
            if parts[2:] == ["attachments", "createUploadSession"] and req.method == "POST":
                return self._upload_session(box, item, req)
            if parts[2:] == ["send"] and req.method == "POST":
                return self._send_draft(box, item)
            if len(parts) == 3 and parts[2] == "$value" and req.method == "GET":
                return Response(200, item.raw, {"Content-Type": "text/plain"})
            if len(parts) == 2 and req.method == "PATCH":
                body = req.json()
                if "isRead" in body and bool(body["isRead"]) != item.is_read:
                    item.is_read = bool(body["isRead"])
                    self._touch(box, item)
                return Response.json(self._resource(item, immutable))
            if len(parts) == 3 and parts[2] == "move" and req.method == "POST":
                wanted = str(req.json().get("destinationId", ""))
                dest = self._folder_id(box, wanted)
                if dest is None and wanted.lower() in FOLDERS:
                    return graph_error(
                        404,
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                if dest is None:
                    return graph_error(400, "ErrorInvalidIdMalformed", "Id is malformed.")
                if dest != item.folder:
                    old = item.folder
                    item.folder = dest
                    self._touch(box, item, old, dest)
                return Response.json(self._resource(item, immutable), 201)
        return graph_error(400, "BadRequest", f"Unsupported request {req.method} {req.path}")

    def notify(self, email: str, folder: str, iid: str, change: str) -> None:
        """POST a change notification to each subscription of ``email`` on ``folder``."""
        notify_impl(self, email, folder, iid, change)

    def lifecycle(self, sid: str, event: str, *, client_state: str | None = None) -> int:
        """POST a lifecycle event (``subscriptionRemoved`` also removes it here)."""
        return lifecycle_impl(self, sid, event, client_state=client_state)

    def _subscriptions(self, who: str, req: Request) -> Response:
        """Push subscriptions (see the section at the end)."""
        return subscriptions_route(self, who, req)

    def _page_size(self, req: Request) -> int:
        match = re.search(r"odata\.maxpagesize=(\d+)", req.headers.get("prefer", ""))
        return max(1, int(match.group(1))) if match else 10

    def _link(self, req: Request, name: str, **params: str) -> str:
        query = "&".join(f"${k}={quote(v, safe='')}" for k, v in params.items())
        prefix = req.path.split("/mailFolders/")[0]  # /v1.0/me or /v1.0/users/{id}
        return f"{self.server.url}{prefix}/mailFolders/{name}/messages/delta?{query}"

    def _delta(self, box: Box, name: str, folder: str, req: Request, immutable: bool) -> Response:
        skip, token = req.arg("$skiptoken"), req.arg("$deltatoken")
        size = self._page_size(req)
        if skip is not None:
            ids = box.rounds.get(skip)
            if ids is None:
                return graph_error(
                    410, "SyncStateNotFound", "The sync state generation is not found."
                )
            key = skip
        else:
            if token is not None:
                try:
                    gen, seq, fid = token.split(".", 2)
                    since = int(seq)
                except ValueError:
                    return graph_error(400, "BadRequest", "Invalid delta token.")
                if int(gen) != box.generation or fid != folder:
                    return graph_error(
                        410, "SyncStateNotFound", "The sync state generation is not found."
                    )
                changed = dict.fromkeys(i for s, f, i in box.log if s > since and f == folder)
                ids = list(changed)
            else:
                received_since = _since(req.arg("$filter"))
                ids = [
                    i.id
                    for i in sorted(box.items.values(), key=lambda i: i.received)
                    if i.folder == folder
                    and (received_since is None or i.received >= received_since)
                ]
            key = f"r{next(self._ids)}"
            box.rounds[key] = ids
        page, rest = ids[:size], ids[size:]
        values: list[dict[str, Any]] = []
        for iid in page:
            item = box.items.get(iid)
            if item is not None and item.folder == folder:
                values.append(self._resource(item, immutable, req.arg("$select")))
            else:
                out_id = iid if immutable or item is None else self._out_id(item, False)
                values.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": out_id,
                        "@removed": {"reason": "deleted"},
                    }
                )
        body: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#Collection(message)",
            "value": values,
        }
        headers = {"Preference-Applied": f"odata.maxpagesize={size}"}
        if rest:
            box.rounds[key] = rest
            body["@odata.nextLink"] = self._link(req, name, skiptoken=key)
        else:
            box.rounds.pop(key, None)
            body["@odata.deltaLink"] = self._link(
                req, name, deltatoken=f"{box.generation}.{box.seq}.{folder}"
            )
        return Response.json(body, headers=headers)

    def _list(self, box: Box, folder: str, req: Request, immutable: bool) -> Response:
        items = [i for i in box.items.values() if i.folder == folder]
        flt = req.arg("$filter")
        if flt:
            match = re.fullmatch(r"internetMessageId eq '((?:[^']|'')*)'", flt.strip())
            if match is None:
                return graph_error(
                    400,
                    "ErrorInvalidUrlQueryFilter",
                    "The query filter contains one or more invalid nodes.",
                )
            wanted = match.group(1).replace("''", "'")
            items = [i for i in items if i.internet_message_id == wanted]
        return Response.json(
            {"value": [self._resource(i, immutable, req.arg("$select")) for i in items[:10]]}
        )

    def _send(self, box: Box, req: Request) -> Response:
        if not req.headers.get("content-type", "").startswith("text/plain"):
            return graph_error(
                400, "ErrorInvalidRequest", "JSON messages are not supported by this fake."
            )
        if len(req.body) > SENDMAIL_MAX:
            return graph_error(413, "ErrorRequestEntityTooLarge", "The request is too large.")
        try:
            raw = base64.b64decode(req.body, validate=True)
        except (binascii.Error, ValueError):
            return graph_error(
                400,
                "ErrorMimeContentInvalidBase64String",
                "Invalid base64 string for MIME content.",
            )
        return self._submit(box, raw)

    def _submit(self, box: Box, raw: bytes) -> Response:
        recipients = _recipients(raw)
        if not recipients:
            return graph_error(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        sender = [a.lower() for _n, a in getaddresses([str(_parse(raw).get("From", ""))])]
        if sender and sender[0] not in (box.email, self.smtp.get(box.email, box.email)):
            return graph_error(
                403,
                "ErrorSendAsDenied",
                "The user account which was used to submit this "
                "request does not have the right to send mail on behalf of the specified "
                "sending account.",
            )
        copy = _without_bcc(raw)
        self.delivered.extend((r, copy) for r in recipients)
        if self.sent_lag:
            box.pending_sent.append(raw)
            box.sent.append(Item("pending", "", raw, "", "", "", datetime.now(UTC)))
        else:
            iid = self.deliver(box.email, raw, "sentitems", is_read=True)
            box.sent.append(box.items[iid])
        return Response(202, b"")

    def _create_draft(self, box: Box, req: Request, immutable: bool) -> Response:
        if not req.headers.get("content-type", "").startswith("text/plain"):
            return graph_error(400, "ErrorInvalidRequest", "JSON drafts are not in this fake.")
        if len(req.body) > SENDMAIL_MAX:
            return graph_error(413, "ErrorRequestEntityTooLarge", "The request is too large.")
        raw = base64.b64decode(req.body, validate=True)
        iid = self.deliver(box.email, raw, "drafts", is_read=True)
        box.attachments[iid] = []
        return Response.json(self._resource(box.items[iid], immutable), 201)

    def _upload_session(self, box: Box, item: Item, req: Request) -> Response:
        spec = req.json().get("AttachmentItem") or {}
        size = int(spec.get("size") or 0)
        if spec.get("attachmentType") != "file" or not 0 < size <= 150 * 1024 * 1024:
            return graph_error(400, "ErrorInvalidRequest", "Invalid attachment item.")
        token = f"up{next(self._ids)}"
        self._uploads[token] = (
            box,
            item.id,
            str(spec.get("name")),
            str(spec.get("contentType")),
            size,
            bytearray(),
        )
        return Response.json(
            {
                "uploadUrl": f"{self.server.url}/upload/{token}?authtoken=fake",
                "expirationDateTime": "2030-01-01T00:00:00Z",
                "nextExpectedRanges": ["0-"],
            },
            201,
        )

    def _upload(self, req: Request) -> Response:
        if req.headers.get("authorization"):
            # The upload URL carries its own token; Graph refuses an extra Authorization.
            return graph_error(401, "InvalidAuthenticationToken", "Unexpected token.")
        token = req.path.rsplit("/", 1)[-1]
        found = self._uploads.get(token)
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", req.headers.get("content-range", ""))
        if found is None or match is None:
            return graph_error(404, "ErrorItemNotFound", "Unknown upload session.")
        box, iid, name, ctype, size, data = found
        start, end, total = (int(g) for g in match.groups())
        if start != len(data) or total != size or end - start + 1 != len(req.body):
            return graph_error(416, "InvalidRange", "The range is not the next expected one.")
        if len(req.body) > 60 * 1024 * 1024 or (end + 1 < size and len(req.body) % 327680):
            return graph_error(400, "InvalidChunk", "Chunks must be multiples of 320 KiB.")
        data.extend(req.body)
        if len(data) < size:
            return Response.json({"nextExpectedRanges": [f"{len(data)}-"]}, 200)
        del self._uploads[token]
        box.attachments.setdefault(iid, []).append((name, ctype, bytes(data)))
        return Response(201, b"")

    def _send_draft(self, box: Box, item: Item) -> Response:
        msg = _parse(item.raw, policy.default)
        assert isinstance(msg, EmailMessage)  # what policy.default parses to
        for name, ctype, data in box.attachments.pop(item.id, []):
            maintype, _s, subtype = ctype.partition("/")
            msg.add_attachment(
                data, maintype=maintype, subtype=subtype or "octet-stream", filename=name
            )
        box.items.pop(item.id, None)
        self._touch(box, item)
        return self._submit(box, msg.as_bytes(policy=policy.SMTP))

    def _shared_denied(self, req: Request, who: str, owner: str) -> Response | None:
        """``/users/{id}``: the user themself, or a delegate with FullAccess and the
        ``.Shared`` scope (``Mail.Send.Shared`` for sending)."""
        if owner == who:
            return None
        if who.startswith("app:"):
            if owner in self.app_mailboxes.get(who[4:], set()):
                return None
            return graph_error(
                403,
                "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly "
                "AccessPolicy settings.",
            )
        scopes = self.oauth.scopes(req.headers.get("authorization"))
        need = (
            "mail.send.shared"
            if req.path.endswith("/sendMail") or req.path.endswith("/send")
            else "mail.readwrite.shared"
        )
        if who not in self.full_access.get(owner, set()):
            return graph_error(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        if need not in scopes:
            return graph_error(
                403, "ErrorAccessDenied", f"Access is denied: the token lacks {need}."
            )
        return None


# -- push: change notification subscriptions ------------------------------------------------
#
# ``POST /subscriptions`` validates ``notificationUrl`` (and ``lifecycleNotificationUrl``)
# first, as Graph does: a POST with ``?validationToken=…`` that must answer 200, text/plain,
# the token as the body, within 10 s; else 400 ``ValidationError``. ``expirationDateTime`` may
# be at most 10,080 minutes ahead (400 otherwise); ``clientState`` at most 128 characters.
# 201 with the subscription. ``PATCH /subscriptions/{id}`` renews (404 when unknown),
# ``DELETE`` answers 204. A message created in a subscribed folder is POSTed to the
# subscription's notificationUrl as ``{"value": [{subscriptionId, clientState, changeType,
# resource, resourceData, subscriptionExpirationDateTime, tenantId}]}``; ``lifecycle()``
# POSTs a lifecycle event (reauthorizationRequired / subscriptionRemoved / missed).

MAX_SUBSCRIPTION_MINUTES = 10_080
_RESOURCE = re.compile(r"^(me|users/[^/]+)/mailFolders\('([^']+)'\)/messages$")


def _post(url: str, body: bytes, content_type: str) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, body, {"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")
    except OSError:
        return 0, b"", ""


def _validate(url: str) -> bool:
    token = "Validation: Testing client application reachability " + secrets.token_hex(8)
    status, body, ctype = _post(
        f"{url}?validationToken={quote(token)}", b"", "text/plain; charset=utf-8"
    )
    return status == 200 and body.decode(errors="replace") == token and "text/plain" in ctype


def _when(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, AttributeError):
        return None


def subscriptions_route(fake: FakeGraph, who: str, req: Request) -> Response:
    parts = [p for p in req.path[len("/v1.0/subscriptions") :].split("/") if p]
    now = fake.clock()
    if not parts and req.method == "POST":
        body = req.json()
        when = _when(str(body.get("expirationDateTime") or ""))
        state = str(body.get("clientState") or "")
        if when is None or when > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES) or when < now:
            return graph_error(
                400,
                "InvalidRequest",
                "Subscription expiration can only be 10080 minutes in the future.",
            )
        if len(state) > 128 or not _RESOURCE.match(str(body.get("resource") or "")):
            return graph_error(400, "InvalidRequest", "Invalid resource or clientState.")
        for key in ("notificationUrl", "lifecycleNotificationUrl"):
            if body.get(key) and not _validate(str(body[key])):
                return graph_error(
                    400, "ValidationError", f"Subscription validation request failed for {key}."
                )
        sid = f"sub-{secrets.token_hex(8)}"
        fake.subscriptions[sid] = {**body, "id": sid, "owner": who}
        return Response.json(_public(fake.subscriptions[sid]), 201)
    sub = fake.subscriptions.get(parts[0]) if parts else None
    if sub is None or sub["owner"] != who:
        return graph_error(404, "ResourceNotFound", "The object was not found.")
    if len(parts) == 1 and req.method == "PATCH":
        when = _when(str(req.json().get("expirationDateTime") or ""))
        if when is None or when > now + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
            return graph_error(
                400,
                "InvalidRequest",
                "Subscription expiration can only be 10080 minutes in the future.",
            )
        sub["expirationDateTime"] = req.json()["expirationDateTime"]
        sub["renewals"] = int(sub.get("renewals", 0)) + 1
        return Response.json(_public(sub))
    if len(parts) == 1 and req.method == "DELETE":
        del fake.subscriptions[parts[0]]
        return Response(204)
    return graph_error(400, "BadRequest", f"Unsupported request {req.method} {req.path}")


def _public(sub: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "id",
        "resource",
        "changeType",
        "clientState",
        "notificationUrl",
        "lifecycleNotificationUrl",
        "expirationDateTime",
    )
    return {k: sub.get(k) for k in keep}


def _send(fake: FakeGraph, url: str, value: list[dict[str, Any]]) -> int:
    body = {"value": value}
    status = _post(url, json.dumps(body).encode(), "application/json")[0]
    fake.notifications.append((url, body, status))
    return status


def notify_impl(fake: FakeGraph, email: str, folder: str, iid: str, change: str) -> None:
    for sub in list(fake.subscriptions.values()):
        match = _RESOURCE.match(str(sub.get("resource")))
        box = sub["owner"] if not match or match.group(1) == "me" else match.group(1)[6:]
        if box.lower() != email.lower() or not match or match.group(2).lower() != folder.lower():
            continue
        if change not in str(sub.get("changeType", "")).split(","):
            continue
        _send(
            fake,
            str(sub["notificationUrl"]),
            [
                {
                    "subscriptionId": sub["id"],
                    "subscriptionExpirationDateTime": sub["expirationDateTime"],
                    "changeType": change,
                    "resource": f"Users/user-1/Messages/{iid}",
                    "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": iid},
                    "clientState": sub.get("clientState"),
                    "tenantId": "contoso-tenant",
                }
            ],
        )


def lifecycle_impl(
    fake: FakeGraph, sid: str, event: str, *, client_state: str | None = None
) -> int:
    sub = fake.subscriptions[sid]
    if event == "subscriptionRemoved":
        del fake.subscriptions[sid]
    return _send(
        fake,
        str(sub["lifecycleNotificationUrl"]),
        [
            {
                "subscriptionId": sid,
                "subscriptionExpirationDateTime": sub["expirationDateTime"],
                "tenantId": "contoso-tenant",
                "clientState": sub.get("clientState") if client_state is None else client_state,
                "lifecycleEvent": event,
            }
        ],
    )
