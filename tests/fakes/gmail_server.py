"""A fake Gmail API (v1) for one or more mailboxes, following the public reference:

``users.getProfile``, ``users.messages.list`` (newest first, ``maxResults`` ≤ 500, default
100, ``pageToken``, ``labelIds``, ``includeSpamTrash``, ``q=rfc822msgid:``),
``users.messages.get`` (``format=raw|minimal|metadata|full``), ``modify``, ``trash``,
``users.labels.list`` (system labels plus the user labels a test created),
``send`` (JSON ``{"raw", "threadId"}``; the message gets the SENT label, no other copy),
``users.history.list`` (``startHistoryId`` required; 404 when older than the kept history;
``maxResults`` ≤ 500, default 100; ``historyTypes``; ``nextPageToken``). Errors use Google's
JSON error shape; an invalid bearer token gets 401 UNAUTHENTICATED.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from email.utils import getaddresses
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import FakeHttpServer, Request, Response
from tests.fakes.oauth_server import FakeOAuth

PREFIX = "/gmail/v1/users/me/"
UPLOAD_SEND = "/upload/gmail/v1/users/me/messages/send"
JSON_SEND_MAX = 5 * 1024 * 1024  # the JSON `raw` path answers 413 above about this
MEDIA_SEND_MAX = 36_700_160  # messages.send mediaUpload maxSize (35 MB)
HIDDEN = frozenset({"SPAM", "TRASH"})
SYSTEM_LABELS = (
    "INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "CHAT",
    "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
)  # fmt: skip


def gmail_error(status: int, message: str, reason: str, state: str) -> Response:
    return Response.json(
        {
            "error": {
                "code": status,
                "message": message,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
                "status": state,
            }
        },
        status,
    )


_TYPE_KEYS = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}
NOT_FOUND = ("Requested entity was not found.", "notFound", "NOT_FOUND")


@dataclass
class Stored:
    id: str
    thread_id: str
    raw: bytes
    labels: set[str]
    internal_date: int  # ms
    history_id: int
    message_id: str


@dataclass
class Mailbox:
    email: str
    messages: dict[str, Stored] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    history_id: int = 1000
    oldest_history: int = 0  # startHistoryId below this → 404
    sent: list[Stored] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # user label id → name


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class FakeGmail:
    def __init__(self, oauth: FakeOAuth) -> None:
        self.oauth = oauth
        self.boxes: dict[str, Mailbox] = {}
        self.watches: dict[str, dict[str, Any]] = {}  # email → {topic, labels, expiration}
        self._ids = itertools.count(0x18C0000000000000)
        self._clock = itertools.count(1_700_000_000_000, 60_000)
        self.server = FakeHttpServer(self._handle)
        self.pubsub = FakePubSub(self.server.url + CERTS_PATH)
        # What left through send: (recipient, the copy they got: no Bcc header).
        self.delivered: list[tuple[str, bytes]] = []
        self.batches: list[int] = []  # calls per batch request received

    @property
    def url(self) -> str:
        return self.server.url + "/"

    def close(self) -> None:
        self.server.close()

    # -- mailbox side ("the outside world") -------------------------------------------

    def box(self, email: str) -> Mailbox:
        return self.boxes.setdefault(email, Mailbox(email))

    def _record(self, box: Mailbox, kind: str, m: Stored, labels: list[str] | None = None) -> None:
        box.history_id += 1
        m.history_id = box.history_id
        entry: dict[str, Any] = {"id": str(box.history_id), "messages": [self._ref(m)]}
        item: dict[str, Any] = {"message": self._ref(m)}
        if labels is not None:
            item["labelIds"] = labels
        entry[kind] = [item]
        box.history.append(entry)

    @staticmethod
    def _ref(m: Stored) -> dict[str, Any]:
        return {"id": m.id, "threadId": m.thread_id, "labelIds": sorted(m.labels)}

    def _thread_for(self, box: Mailbox, raw: bytes) -> str | None:
        msg = message_from_bytes(raw, policy=policy.compat32)
        refs = re.findall(r"<([^>]+)>", f"{msg.get('In-Reply-To', '')} {msg.get('References', '')}")
        for m in box.messages.values():
            if m.message_id in refs:
                return m.thread_id
        return None

    def deliver(self, email: str, raw: bytes, labels: tuple[str, ...] = ("INBOX", "UNREAD")) -> str:
        box = self.box(email)
        mid = f"{next(self._ids):x}"
        parsed = message_from_bytes(raw, policy=policy.compat32)
        message_id = str(parsed.get("Message-ID", "")).strip().strip("<>")
        thread = self._thread_for(box, raw) or mid
        m = Stored(mid, thread, raw, set(labels), next(self._clock), 0, message_id)
        box.messages[mid] = m
        self._record(box, "messagesAdded", m)
        if self.watches.get(email, {}).get("labels", set()) & m.labels:
            self.pubsub.publish(email, box.history_id)  # Gmail → topic → push to Mailroom
        return mid

    # -- labels (users.labels.list) --------------------------------------------------

    def create_label(self, email: str, name: str) -> str:
        """A user label; put it on messages with ``deliver(labels=...)`` or ``relabel``."""
        box = self.box(email)
        label_id = f"Label_{len(box.labels) + 1}"
        box.labels[label_id] = name
        return label_id

    def _labels(self, box: Mailbox) -> Response:
        system = [{"id": x, "name": x, "type": "system"} for x in SYSTEM_LABELS]
        user = [
            {
                "id": k,
                "name": v,
                "type": "user",
                "messageListVisibility": "show",
                "labelListVisibility": "labelShow",
            }
            for k, v in box.labels.items()
        ]
        return Response.json({"labels": system + user})

    def relabel(
        self, email: str, mid: str, add: tuple[str, ...] = (), remove: tuple[str, ...] = ()
    ) -> None:
        box = self.box(email)
        m = box.messages[mid]
        if add:
            m.labels |= set(add)
            self._record(box, "labelsAdded", m, list(add))
        if remove:
            m.labels -= set(remove)
            self._record(box, "labelsRemoved", m, list(remove))

    def delete(self, email: str, mid: str) -> None:
        box = self.box(email)
        m = box.messages.pop(mid)
        self._record(box, "messagesDeleted", m)

    def expire_history(self, email: str) -> None:
        """Gmail keeps history for about a week: everything before now is gone."""
        box = self.box(email)
        box.oldest_history = box.history_id + 1
        box.history.clear()

    # -- HTTP -------------------------------------------------------------------------

    def _handle(self, req: Request) -> Response:
        if req.path == CERTS_PATH:  # Google's public keys (no auth): the push tokens' signer
            return Response.json(self.pubsub.certs())
        if req.path == "/batch/gmail/v1" and req.method == "POST":
            return self._batch(req)
        return self._handle_one(req)

    def _batch(self, req: Request) -> Response:
        """HTTP batch (multipart/mixed of application/http parts, at most 100 calls; each is
        authorised and charged on its own, as Google does). Quota: the units of each call
        count against the user's per-minute budget (``quota_units``)."""
        head = f"Content-Type: {req.headers.get('content-type', '')}\r\n\r\n".encode()
        outer = message_from_bytes(head + req.body, policy=policy.compat32)
        parts = outer.get_payload() if outer.is_multipart() else None
        if not isinstance(parts, list) or not 0 < len(parts) <= 100:
            return gmail_error(400, "Bad batch", "badRequest", "INVALID_ARGUMENT")
        self.batches.append(len(parts))
        boundary = "batch_fake_boundary"
        out: list[str] = []
        for part in parts:
            assert isinstance(part, Message)  # a multipart's payload is its sub-messages
            text = str(part.get_payload())
            lines = text.replace("\r\n", "\n").split("\n")
            method, target, _v = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if not line:
                    break
                name, _s, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            split = urlsplit(target)
            inner = Request(
                method, split.path, parse_qs(split.query, keep_blank_values=True), headers, b""
            )
            resp = self.server._fault(inner) or self._handle_one(inner)
            cid = str(part.get("Content-ID", "<x+0>"))
            out.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-ID: <response-{cid[1:]}\r\n\r\n"
                f"HTTP/1.1 {resp.status} X\r\nContent-Type: application/json; charset=UTF-8\r\n"
                + "".join(
                    f"{k}: {v}\r\n" for k, v in resp.headers.items() if k.lower() == "retry-after"
                )
                + f"\r\n{resp.body.decode()}\r\n"
            )
        body = "".join(out) + f"--{boundary}--\r\n"
        return Response(
            200, body.encode(), {"Content-Type": f"multipart/mixed; boundary={boundary}"}
        )

    def _handle_one(self, req: Request) -> Response:
        who = self.oauth.who(req.headers.get("authorization"))
        if who is not None and req.path.startswith(PUBSUB_PREFIX):
            return self.pubsub.handle_pull(req)
        if who is None:
            return gmail_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
                "authError",
                "UNAUTHENTICATED",
            )
        if req.path == UPLOAD_SEND and req.method == "POST":
            return self._upload_send(self.box(who), req)
        if not req.path.startswith(PREFIX):
            return gmail_error(404, *NOT_FOUND)
        box = self.box(who)
        parts = req.path[len(PREFIX) :].split("/")
        route = (req.method, parts[0], len(parts))
        if route == ("GET", "profile", 1):
            return Response.json(
                {
                    "emailAddress": who,
                    "messagesTotal": len(box.messages),
                    "threadsTotal": len({m.thread_id for m in box.messages.values()}),
                    "historyId": str(box.history_id),
                }
            )
        if route == ("GET", "history", 1):
            return self._history(box, req)
        if route == ("GET", "labels", 1):
            return self._labels(box)
        if route == ("POST", "watch", 1):
            return self._watch(box, req)
        if route == ("POST", "stop", 1):
            self.watches.pop(box.email, None)
            return Response(204)
        if parts[0] != "messages":
            return gmail_error(404, *NOT_FOUND)
        if route == ("GET", "messages", 1):
            return self._list(box, req)
        if route == ("POST", "messages", 2) and parts[1] == "send":
            return self._send(box, req)
        m = box.messages.get(parts[1]) if len(parts) > 1 else None
        if m is None:
            return gmail_error(404, *NOT_FOUND)
        if req.method == "GET" and len(parts) == 2:
            return Response.json(self._render(m, req.arg("format", "full") or "full"))
        if req.method == "POST" and len(parts) == 3 and parts[2] == "modify":
            body = req.json()
            add = [x for x in body.get("addLabelIds") or [] if x not in m.labels]
            remove = [x for x in body.get("removeLabelIds") or [] if x in m.labels]
            m.labels |= set(add)
            m.labels -= set(remove)
            if add:
                self._record(box, "labelsAdded", m, add)
            if remove:
                self._record(box, "labelsRemoved", m, remove)
            return Response.json(self._render(m, "minimal"))
        if req.method == "POST" and len(parts) == 3 and parts[2] == "trash":
            removed = [x for x in ("INBOX",) if x in m.labels]
            m.labels = (m.labels - {"INBOX"}) | {"TRASH"}
            self._record(box, "labelsAdded", m, ["TRASH"])
            if removed:
                self._record(box, "labelsRemoved", m, removed)
            return Response.json(self._render(m, "minimal"))
        return gmail_error(404, *NOT_FOUND)

    def _watch(self, box: Mailbox, req: Request) -> Response:
        """users.watch (see the push section at the end)."""
        body = req.json()
        topic = str(body.get("topicName") or "")
        if not re.fullmatch(r"projects/[^/]+/topics/[^/]+", topic):
            return gmail_error(400, "Invalid topicName", "invalidArgument", "INVALID_ARGUMENT")
        labels = set(body.get("labelIds") or ["INBOX"])
        expiration = int((time.time() + WATCH_DAYS * 86400) * 1000)
        self.watches[box.email] = {"topic": topic, "labels": labels, "expiration": expiration}
        return Response.json({"historyId": str(box.history_id), "expiration": str(expiration)})

    def _render(self, m: Stored, fmt: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": m.id,
            "threadId": m.thread_id,
            "labelIds": sorted(m.labels),
            "historyId": str(m.history_id),
            "internalDate": str(m.internal_date),
            "sizeEstimate": len(m.raw),
        }
        if fmt == "raw":
            out["raw"] = _b64(m.raw)
        if fmt in ("full", "metadata"):
            out["snippet"] = ""
            out["payload"] = {
                "mimeType": "message/rfc822",
                "headers": [{"name": "Message-ID", "value": f"<{m.message_id}>"}],
            }
        return out

    def _list(self, box: Mailbox, req: Request) -> Response:
        limit = min(int(req.arg("maxResults", "100") or 100), 500)
        offset = int(req.arg("pageToken", "0") or 0)
        include_hidden = (req.arg("includeSpamTrash", "false") or "false").lower() == "true"
        wanted = set(req.query.get("labelIds") or [])
        q = req.arg("q") or ""
        found = sorted(box.messages.values(), key=lambda m: (m.internal_date, m.id), reverse=True)
        if not include_hidden:
            found = [m for m in found if not m.labels & HIDDEN]
        if wanted:
            found = [m for m in found if wanted <= m.labels]
        if q:
            match = re.fullmatch(r"rfc822msgid:<?([^>\s]+)>?", q.strip())
            if match is None:
                return gmail_error(400, "Invalid query", "invalidArgument", "INVALID_ARGUMENT")
            found = [m for m in found if m.message_id == match.group(1)]
        page = found[offset : offset + limit]
        body: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if offset + limit < len(found):
            body["nextPageToken"] = str(offset + limit)
        return Response.json(body)

    def _history(self, box: Mailbox, req: Request) -> Response:
        start = req.arg("startHistoryId")
        if not start or not start.isdigit():
            return gmail_error(400, "Invalid startHistoryId", "invalidArgument", "INVALID_ARGUMENT")
        if int(start) < box.oldest_history:
            return gmail_error(404, *NOT_FOUND)
        limit = min(int(req.arg("maxResults", "100") or 100), 500)
        # historyTypes values are singular ("messageAdded"); record keys plural.
        types = {_TYPE_KEYS.get(t, t) for t in req.query.get("historyTypes") or []}
        records = [h for h in box.history if int(h["id"]) > int(start)]
        if types:
            records = [h for h in records if types & set(h)]
        offset = int(req.arg("pageToken", "0") or 0)
        page = records[offset : offset + limit]
        body: dict[str, Any] = {"historyId": str(box.history_id)}
        if page:
            body["history"] = page
        if offset + limit < len(records):
            body["nextPageToken"] = str(offset + limit)
        return Response.json(body)

    def _upload_send(self, box: Mailbox, req: Request) -> Response:
        """``uploadType=multipart``: a multipart/related body of JSON metadata + the message."""
        if req.arg("uploadType") != "multipart":
            return gmail_error(400, "Unsupported uploadType", "badRequest", "INVALID_ARGUMENT")
        if len(req.body) > MEDIA_SEND_MAX + 64 * 1024:
            return gmail_error(413, "Request Entity Too Large", "uploadTooLarge", "OUT_OF_RANGE")
        match = re.search(r'boundary="?([^";]+)"?', req.headers.get("content-type", ""))
        if match is None:
            return gmail_error(400, "Bad multipart body", "badRequest", "INVALID_ARGUMENT")
        chunks = req.body.split(b"--" + match.group(1).encode())
        parts = [c for c in chunks[1:] if not c.startswith(b"--")]
        if len(parts) != 2:
            return gmail_error(400, "Bad multipart body", "badRequest", "INVALID_ARGUMENT")
        bodies = []
        for part in parts:
            part = part[2:] if part.startswith(b"\r\n") else part[1:]  # the boundary line end
            ends = [i for i in (part.find(b"\n\n"), part.find(b"\r\n\r\n")) if i >= 0]
            cut = min(ends)
            content = part[cut + (4 if part[cut : cut + 4] == b"\r\n\r\n" else 2) :]
            bodies.append(content[:-2] if content.endswith(b"\r\n") else content[:-1])
        meta, media = json.loads(bodies[0] or b"{}"), bodies[1]
        return self._accept(box, media, meta.get("threadId"))

    def _send(self, box: Mailbox, req: Request) -> Response:
        if len(req.body) > JSON_SEND_MAX:
            return gmail_error(413, "Request Entity Too Large", "badRequest", "OUT_OF_RANGE")
        body = req.json()
        try:
            raw = base64.urlsafe_b64decode(str(body["raw"]) + "==")
        except (KeyError, ValueError):
            return gmail_error(
                400, "Invalid value for ByteString", "invalidArgument", "INVALID_ARGUMENT"
            )
        return self._accept(box, raw, body.get("threadId"))

    def _accept(self, box: Mailbox, raw: bytes, thread: str | None) -> Response:
        recipients = _recipients(raw)
        if not raw.strip() or not recipients:
            return gmail_error(
                400, "Recipient address required", "invalidArgument", "INVALID_ARGUMENT"
            )
        if thread and not any(m.thread_id == thread for m in box.messages.values()):
            return gmail_error(404, *NOT_FOUND)
        parsed = message_from_bytes(raw, policy=policy.compat32)
        message_id = str(parsed.get("Message-ID", "")).strip().strip("<>")
        mid = f"{next(self._ids):x}"
        m = Stored(
            mid,
            thread or self._thread_for(box, raw) or mid,
            raw,
            {"SENT"},
            next(self._clock),
            0,
            message_id,
        )
        box.messages[mid] = m
        box.sent.append(m)
        self._record(box, "messagesAdded", m)
        delivered = _without_bcc(raw)
        self.delivered.extend((r, delivered) for r in recipients)
        return Response.json(self._ref(m))


def _recipients(raw: bytes) -> list[str]:
    """Gmail has no envelope: the To, Cc and Bcc headers are the recipients."""
    parsed = message_from_bytes(raw, policy=policy.compat32)
    fields = [str(v) for k in ("To", "Cc", "Bcc") for v in parsed.get_all(k) or []]
    return [a.lower() for _n, a in getaddresses(fields) if "@" in a]


def _without_bcc(raw: bytes) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    kept: list[bytes] = []
    skipping = False
    for line in lines:
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().startswith(b"bcc:")
        if not skipping:
            kept.append(line)
    return b"\r\n".join(kept) + sep + body


# -- push: users.watch / users.stop and Cloud Pub/Sub push delivery ---------------------------
#
# ``users.watch`` (``topicName``, ``labelIds``, ``labelFilterBehavior``) answers
# ``{historyId, expiration}`` (ms, 7 days ahead); ``users.stop`` answers 204. While a mailbox
# is watched, each delivery with a watched label is published; the fake Pub/Sub push
# subscription POSTs it to ``push_url`` as Pub/Sub does: ``{"message": {"data": base64 JSON
# {emailAddress, historyId}, "messageId", "publishTime"}, "subscription"}`` with an OIDC token
# (RS256, ``iss`` https://accounts.google.com, ``aud``, ``email``, ``email_verified``) in
# ``Authorization: Bearer``, signed by a test key whose certificate is served at CERTS_PATH in
# the shape of https://www.googleapis.com/oauth2/v1/certs (``{kid: PEM certificate}``).

CERTS_PATH = "/oauth2/v1/certs"
WATCH_DAYS = 7
# Pull delivery: ``POST /v1/projects/P/subscriptions/S:pull`` ``{maxMessages}`` answers
# ``{"receivedMessages": [{ackId, message}]}`` (unacknowledged messages come again);
# ``:acknowledge`` ``{ackIds}`` removes them. Any bearer token the fake OAuth issued is let in.
PUBSUB_PREFIX = "/v1/projects/"


def make_signing_key(common_name: str = "fake-google") -> tuple[bytes, bytes]:
    """An RSA key and a self-signed certificate for it (PEM), as Google publishes its keys."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem_key, cert.public_bytes(serialization.Encoding.PEM)


class FakePubSub:
    """The topic's push subscription: signs and POSTs pushes; records what Mailroom answered."""

    def __init__(self, certs_url: str) -> None:
        self.certs_url = certs_url
        self.kid = "fake-kid-1"
        self.private_key, self.cert = make_signing_key()
        self.push_url: str | None = None  # Mailroom's /push/gmail; None: nothing is pushed
        self.audience: str | None = None  # default: push_url
        self.service_account = "push@mailroom-test.iam.gserviceaccount.com"
        self.sent: list[tuple[dict[str, Any], int]] = []  # (envelope, HTTP status)
        self.previous: dict[str, str] = {}  # the key before the last rotate()
        self.pull = False  # True: messages wait in `queue` for a pull subscriber
        self.queue: dict[str, dict[str, Any]] = {}  # ackId → message
        self._ids = itertools.count(1)

    def rotate(self) -> None:
        """Google's key rotation: a new key (and kid) signs from now on; both are published."""
        self.previous = {self.kid: self.cert.decode()}
        self.kid = f"fake-kid-{next(self._ids)}"
        self.private_key, self.cert = make_signing_key()

    def certs(self) -> dict[str, str]:
        return {**self.previous, self.kid: self.cert.decode()}

    def token(
        self,
        *,
        audience: str | None = None,
        email: str | None = None,
        issuer: str = "https://accounts.google.com",
        private_key: bytes | None = None,
        lifetime: int = 3600,
    ) -> str:
        from google.auth import crypt, jwt

        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": audience or self.audience or self.push_url,
            "azp": "1234567890",
            "sub": "1234567890",
            "email": email or self.service_account,
            "email_verified": True,
            "iat": now,
            "exp": now + lifetime,
        }
        signer = crypt.RSASigner.from_string(private_key or self.private_key, key_id=self.kid)
        return jwt.encode(signer, claims).decode()

    def envelope(self, email: str, history_id: int) -> dict[str, Any]:
        data = json.dumps({"emailAddress": email, "historyId": history_id}).encode()
        return {
            "message": {
                "data": base64.b64encode(data).decode(),
                "messageId": str(next(self._ids)),
                "publishTime": datetime.now(UTC).isoformat(),
            },
            "subscription": "projects/mailroom-test/subscriptions/gmail-push",
        }

    def post(self, envelope: dict[str, Any], token: str | None) -> int:
        """POST one push to Mailroom; returns the HTTP status (2xx acknowledges)."""
        if self.push_url is None:
            raise RuntimeError("no push_url")
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(
            self.push_url, json.dumps(envelope).encode(), headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status = int(resp.status)
        except urllib.error.HTTPError as exc:
            status = exc.code
        self.sent.append((envelope, status))
        return status

    def publish(self, email: str, history_id: int) -> None:
        if self.push_url is not None:
            self.post(self.envelope(email, history_id), self.token())
        if self.pull:
            self.queue[f"ack-{next(self._ids)}"] = self.envelope(email, history_id)["message"]

    def handle_pull(self, req: Request) -> Response:
        if req.method == "POST" and req.path.endswith(":pull"):
            limit = int(req.json().get("maxMessages") or 1)
            items = list(self.queue.copy().items())[:limit]
            return Response.json(
                {"receivedMessages": [{"ackId": a, "message": m} for a, m in items]}
            )
        if req.method == "POST" and req.path.endswith(":acknowledge"):
            for ack in req.json().get("ackIds") or []:
                self.queue.pop(ack, None)
            return Response.json({})
        return Response.json({"error": {"code": 404, "status": "NOT_FOUND"}}, 404)
