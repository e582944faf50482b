"""Gmail API provider on google-api-python-client: plain data out, provider errors only.

The service is built from the discovery document bundled with the library
(``static_discovery=True``), so starting needs no extra request; ``api_endpoint`` points it
elsewhere (a proxy, or the loopback fake in tests). Access tokens come from
:class:`bot.providers.oauth.TokenSource` through google-auth's AuthorizedHttp, which
refreshes once on a 401 and repeats the request.

Limits honoured (sync.md §1.2): 250 quota units per user per second; a 429 (or a 403 with
reason ``rateLimitExceeded``/``userRateLimitExceeded``) is retried after ``Retry-After``
(exponential backoff when absent), at most ``MAX_RETRIES`` times, then TransientError so the
engine backs off. ``history.list`` on an expired ``startHistoryId`` answers 404: that is
:class:`HistoryExpired`, the caller's cue for a bounded full resync.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httplib2
from google.auth.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest, MediaIoBaseUpload

from bot.providers.errors import (
    AuthError,
    ConfigError,
    MessageRejected,
    ProtocolError,
    ProviderError,
    TransientError,
)
from bot.providers.oauth import REAUTH, TokenSource

log = logging.getLogger(__name__)

MAX_RETRIES = 4
# Quota (developers.google.com/gmail/api/reference/quota): 15,000 units per user per minute
# (250/s on average); messages.get costs 5. A batch holds at most 50 calls (Google's advice
# for Gmail), so a full batch is 250 units and batches are paced to one a second.
UNITS_PER_SECOND = 250.0
GET_UNITS = 5
BATCH_SIZE = 50
SEND_MAX_BYTES = 36_700_160  # messages.send mediaUpload maxSize (35 MB), discovery document
MAX_WAIT_SECONDS = 120.0  # a longer Retry-After ends the run; the engine's backoff takes over
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})

#: Indirection so tests can record the waits instead of sleeping.
SLEEP: Callable[[float], None] = time.sleep
CLOCK: Callable[[], float] = time.monotonic


class HistoryExpired(ProviderError):
    """``startHistoryId`` is too old (HTTP 404): run a bounded full sync."""


@dataclass(frozen=True)
class GmailMessage:
    id: str
    thread_id: str
    label_ids: frozenset[str]
    raw: bytes  # empty unless fetched with format=raw
    internal_date: datetime | None
    history_id: str | None
    size: int


@dataclass(frozen=True)
class HistoryPage:
    """Ids touched by one ``history.list`` run: added, deleted, relabelled."""

    added: list[str]
    deleted: list[str]
    relabelled: list[str]
    history_id: str


@dataclass(frozen=True)
class GmailLabel:
    """One label from ``users.labels.list``: ``type`` is ``system`` or ``user``."""

    id: str
    name: str
    type: str


class _SourceCredentials(Credentials):
    """google-auth credentials backed by our TokenSource (one refresh path for everything)."""

    def __init__(self, source: TokenSource) -> None:
        super().__init__()
        self._source = source

    def refresh(self, request: Any) -> None:
        self.token = self._source.refresh(rejected=self.token)

    def before_request(self, request: Any, method: str, url: str, headers: dict[str, str]) -> None:
        self.token = self._source.access_token()
        headers["authorization"] = f"Bearer {self.token}"


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _reason(exc: HttpError) -> str:
    try:
        data = json.loads(exc.content or b"{}")
        errors = data.get("error", {}).get("errors") or [{}]
        return str(errors[0].get("reason") or data.get("error", {}).get("status") or "")
    except (ValueError, AttributeError):
        return ""


def _backoff(attempt: int) -> float:
    # Exponential with jitter, as Google's handle-errors guide asks: many workers hitting the
    # same quota do not retry in step.
    return float(2**attempt) + random.uniform(0, 1)


def _retry_after(exc: HttpError, attempt: int) -> float:
    value = exc.resp.get("retry-after") if exc.resp is not None else None
    if value is None:
        # Gmail seldom sends the header; its 429 message may say "Retry after <RFC 3339>".
        match = re.search(r"Retry after (\S+Z)", (exc.content or b"").decode("utf-8", "replace"))
        if match:
            try:
                when = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
            except ValueError:
                pass
        return _backoff(attempt)
    try:
        return max(0.0, float(value))
    except ValueError:
        return _backoff(attempt)


def _message(data: dict[str, Any]) -> GmailMessage:
    try:
        when: datetime | None = datetime.fromtimestamp(int(data["internalDate"]) / 1000, UTC)
    except (KeyError, ValueError, TypeError):
        when = None
    raw = _b64url_decode(str(data["raw"])) if data.get("raw") else b""
    return GmailMessage(
        id=str(data["id"]),
        thread_id=str(data.get("threadId") or ""),
        label_ids=frozenset(data.get("labelIds") or ()),
        raw=raw,
        internal_date=when,
        history_id=str(data["historyId"]) if data.get("historyId") else None,
        size=int(data.get("sizeEstimate") or len(raw)),
    )


class GmailClient:
    """One mailbox (``userId="me"``) over the Gmail REST API."""

    def __init__(
        self,
        tokens: TokenSource,
        *,
        api_endpoint: str | None = None,
        ca_file: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self._source = tokens
        self._creds = _SourceCredentials(tokens)
        http = AuthorizedHttp(self._creds, http=httplib2.Http(timeout=timeout, ca_certs=ca_file))
        self._endpoint = api_endpoint
        options = {"api_endpoint": api_endpoint} if api_endpoint else None
        self._service = build(
            "gmail",
            "v1",
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options=options,
        )
        self._users = self._service.users()
        root = (api_endpoint or "https://gmail.googleapis.com/").rstrip("/")
        self._batch_uri = f"{root}/batch/gmail/v1"
        self._budget_at = 0.0  # when the quota spent so far is paid off (CLOCK time)

    # -- plumbing ---------------------------------------------------------------------

    def _call(self, request: Any, what: str, *, retry: bool = True) -> Any:
        """Execute with the project's retry loop. ``retry=False`` for sends (not idempotent):
        a 429/5xx is a TransientError at once and the outbox re-checks Sent first."""
        attempt = 0
        while True:
            try:
                return request.execute(num_retries=0)
            except HttpError as exc:
                status = exc.resp.status
                reason = _reason(exc)
                limited = status == 429 or (status == 403 and reason in _RATE_REASONS)
                if (limited or status in (500, 502, 503, 504)) and not retry:
                    raise TransientError(
                        f"Gmail answered HTTP {status} to {what}; whether it was done is checked "
                        "before another try."
                    ) from exc
                if limited or status in (500, 502, 503, 504):
                    delay = _retry_after(exc, attempt)
                    if attempt < MAX_RETRIES and delay <= MAX_WAIT_SECONDS:
                        log.info("Gmail %s: HTTP %s, retrying in %.0f s", what, status, delay)
                        SLEEP(delay)
                        attempt += 1
                        continue
                    raise TransientError(
                        f"Gmail is busy or rate-limiting this mailbox ({what}: HTTP {status}); "
                        "the sync will retry later."
                    ) from exc
                raise self._translate(exc, status, reason, what) from exc
            except ProviderError:
                raise
            except (TimeoutError, httplib2.HttpLib2Error, OSError) as exc:
                raise TransientError(
                    f"Gmail could not be reached ({what}: {type(exc).__name__})."
                ) from exc

    @staticmethod
    def _translate(exc: HttpError, status: int, reason: str, what: str) -> ProviderError:
        if status == 401:
            return AuthError(f"Gmail rejected the access token: the account {REAUTH}.")
        if status == 403 and reason in (
            "insufficientPermissions",
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
        ):
            return AuthError(
                f"Mailroom lacks a Gmail permission ({what}): the account {REAUTH} and the "
                "admin must grant every requested scope."
            )
        if status == 403 and reason == "domainPolicy":
            return ConfigError(
                "A Google Workspace admin blocks Mailroom from Gmail data: mark its OAuth client "
                "Trusted (Admin console → Security → Access and data control → API controls)."
            )
        if status == 403 and reason == "dailyLimitExceeded":
            return TransientError(f"Gmail's daily quota is used up ({what}); retrying later.")
        if status == 413:
            return MessageRejected(f"Gmail refused {what}: the email is too large.", code=413)
        if status == 403:
            return ConfigError(
                f"Gmail refused {what} ({reason or 'forbidden'}): is the Gmail API enabled in "
                "the Google Cloud project, and is the mailbox a Gmail / Workspace account?"
            )
        return ProtocolError(f"Gmail answered HTTP {status} to {what} ({reason or 'no reason'}).")

    # -- reading ----------------------------------------------------------------------

    def profile(self) -> dict[str, Any]:
        """``{"emailAddress", "historyId", "messagesTotal", ...}``"""
        result: dict[str, Any] = self._call(self._users.getProfile(userId="me"), "getProfile")
        return result

    def labels(self) -> list[GmailLabel]:
        """Every label of the mailbox (system and user), as ``users.labels.list`` gives them."""
        data = self._call(self._users.labels().list(userId="me"), "labels.list")
        return [
            GmailLabel(str(x["id"]), str(x.get("name") or x["id"]), str(x.get("type") or "user"))
            for x in data.get("labels") or []
            if x.get("id")
        ]

    def list_ids(
        self,
        *,
        limit: int,
        q: str | None = None,
        label_ids: Sequence[str] = (),
        include_spam_trash: bool = False,
        page_size: int = 500,
    ) -> list[tuple[str, str]]:
        """(id, threadId) of the newest ``limit`` messages matching, newest first."""
        out: list[tuple[str, str]] = []
        token: str | None = None
        while len(out) < limit:
            kwargs: dict[str, Any] = {
                "userId": "me",
                "maxResults": min(page_size, 500, limit - len(out)),
                "includeSpamTrash": include_spam_trash,
            }
            if q:
                kwargs["q"] = q
            if label_ids:
                kwargs["labelIds"] = list(label_ids)
            if token:
                kwargs["pageToken"] = token
            data = self._call(self._users.messages().list(**kwargs), "messages.list")
            out.extend(
                (str(m["id"]), str(m.get("threadId") or "")) for m in data.get("messages") or []
            )
            token = data.get("nextPageToken")
            if not token:
                break
        return out[:limit]

    def history(self, start_history_id: str, *, page_size: int = 500) -> HistoryPage:
        """Every change since ``start_history_id`` (all pages). HistoryExpired on 404."""
        added: dict[str, None] = {}
        deleted: dict[str, None] = {}
        relabelled: dict[str, None] = {}
        token: str | None = None
        latest = start_history_id
        while True:
            kwargs: dict[str, Any] = {
                "userId": "me",
                "startHistoryId": start_history_id,
                "historyTypes": list(HISTORY_TYPES),
                "maxResults": page_size,
            }
            if token:
                kwargs["pageToken"] = token
            try:
                data = self._call(self._users.history().list(**kwargs), "history.list")
            except ProtocolError as exc:
                cause = exc.__cause__
                if isinstance(cause, HttpError) and cause.resp.status == 404:
                    raise HistoryExpired(
                        f"Gmail no longer has history since {start_history_id}: full resync."
                    ) from exc
                raise
            for record in data.get("history") or []:
                for item in record.get("messagesAdded") or []:
                    added[str(item["message"]["id"])] = None
                for item in record.get("messagesDeleted") or []:
                    deleted[str(item["message"]["id"])] = None
                for key in ("labelsAdded", "labelsRemoved"):
                    for item in record.get(key) or []:
                        relabelled[str(item["message"]["id"])] = None
            latest = str(data.get("historyId") or latest)
            token = data.get("nextPageToken")
            if not token:
                break
        return HistoryPage(list(added), list(deleted), list(relabelled), latest)

    def get(self, message_id: str, *, raw: bool = True) -> GmailMessage | None:
        """The message (``format=raw``, or ``minimal`` for labels only); None when gone."""
        request = self._users.messages().get(
            userId="me", id=message_id, format="raw" if raw else "minimal"
        )
        try:
            return _message(self._call(request, "messages.get"))
        except ProtocolError as exc:
            cause = exc.__cause__
            if isinstance(cause, HttpError) and cause.resp.status == 404:
                return None
            raise

    # -- writing ----------------------------------------------------------------------

    def modify(
        self, message_id: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> GmailMessage | None:
        body = {"addLabelIds": list(add), "removeLabelIds": list(remove)}
        request = self._users.messages().modify(userId="me", id=message_id, body=body)
        try:
            return _message(self._call(request, "messages.modify"))
        except ProtocolError as exc:
            cause = exc.__cause__
            if isinstance(cause, HttpError) and cause.resp.status == 404:
                return None  # deleted meanwhile: nothing left to change
            raise

    def trash(self, message_id: str) -> GmailMessage | None:
        request = self._users.messages().trash(userId="me", id=message_id)
        try:
            return _message(self._call(request, "messages.trash"))
        except ProtocolError as exc:
            cause = exc.__cause__
            if isinstance(cause, HttpError) and cause.resp.status == 404:
                return None
            raise

    def send(self, raw: bytes, *, thread_id: str | None = None) -> GmailMessage:
        """Send RFC 822 bytes. Gmail files its own copy under SENT: never insert another.
        Recipients are the To, Cc and Bcc headers (no envelope; Gmail drops Bcc from the
        delivered copies). Sent as a media upload (``/upload/…?uploadType=multipart``, up to
        35 MB): the JSON ``raw`` field is refused with 413 above about 5 MB. Not retried
        here: the outbox checks ``rfc822msgid:`` before another try."""
        if len(raw) > SEND_MAX_BYTES:
            raise MessageRejected(
                f"The email is {len(raw) / 1048576:.1f} MB; Gmail sends at most 35 MB.", code=413
            )
        body: dict[str, Any] = {}
        if thread_id:
            body["threadId"] = thread_id
        media = MediaIoBaseUpload(io.BytesIO(raw), mimetype="message/rfc822", resumable=False)
        request = self._users.messages().send(userId="me", body=body, media_body=media)
        if self._endpoint:
            # The library keeps the discovery document's scheme for upload URLs.
            base = urlsplit(self._endpoint)
            request.uri = urlunsplit(
                urlsplit(request.uri)._replace(scheme=base.scheme, netloc=base.netloc)
            )
        try:
            return _message(self._call(request, "messages.send", retry=False))
        except ProtocolError as exc:
            cause = exc.__cause__
            if thread_id and isinstance(cause, HttpError) and cause.resp.status == 404:
                # The thread was purged in Gmail: nothing was sent; send it unthreaded (the
                # In-Reply-To / References headers still thread it for the recipient).
                return self.send(raw)
            raise

    def find_message_id(self, message_id: str) -> list[str]:
        """Ids of messages with this Message-ID header, in any label (sent copies too)."""
        mid = message_id.strip().strip("<>")
        if not mid or any(c in mid for c in ' "\r\n'):
            return []
        return [
            i for i, _ in self.list_ids(limit=10, q=f"rfc822msgid:{mid}", include_spam_trash=True)
        ]

    def _pace(self, units: int) -> None:
        """Spend ``units`` of the per-user quota, waiting first when running ahead of it."""
        now = CLOCK()
        wait = self._budget_at - now
        if wait > 0:
            SLEEP(wait)
        self._budget_at = max(now, self._budget_at) + units / UNITS_PER_SECOND

    def get_many(
        self, ids: Sequence[str], *, raw: Callable[[str], bool]
    ) -> dict[str, GmailMessage | ProviderError | None]:
        """``messages.get`` for many ids in HTTP batches of ``BATCH_SIZE``, paced to the
        quota. Per id: the message, None when gone (404), or the error when Gmail kept
        failing that one (429/5xx retried with backoff, up to MAX_RETRIES)."""
        out: dict[str, GmailMessage | ProviderError | None] = {}
        pending = list(dict.fromkeys(ids))
        attempt = 0
        while pending:
            again: list[str] = []
            delays = [float(2**attempt)]
            for start in range(0, len(pending), BATCH_SIZE):
                chunk = pending[start : start + BATCH_SIZE]
                self._pace(GET_UNITS * len(chunk))
                again += self._batch_get(chunk, raw, out, delays, last=attempt >= MAX_RETRIES)
            if not again:
                break
            delay = min(max(delays[1:] or delays), MAX_WAIT_SECONDS)  # Retry-After, if given
            SLEEP(delay)
            self._budget_at = max(0.0, self._budget_at - delay)  # the wait paid the quota
            attempt += 1
            pending = again
        return out

    def _batch_get(
        self,
        chunk: list[str],
        raw: Callable[[str], bool],
        out: dict[str, GmailMessage | ProviderError | None],
        delays: list[float],
        *,
        last: bool,
    ) -> list[str]:
        again: list[str] = []

        def done(request_id: str, response: Any, exc: Exception | None) -> None:
            if exc is None:
                out[request_id] = _message(response)
                return
            status = exc.resp.status if isinstance(exc, HttpError) else 0
            reason = _reason(exc) if isinstance(exc, HttpError) else ""
            if status == 404:
                out[request_id] = None
            elif (status in (429, 500, 502, 503, 504) or reason in _RATE_REASONS) and not last:
                again.append(request_id)
                if isinstance(exc, HttpError) and exc.resp.get("retry-after"):
                    delays.append(_retry_after(exc, 0))
            elif isinstance(exc, HttpError):
                failed = self._translate(exc, status, reason, "messages.get")
                if status in (429, 500, 502, 503, 504) or reason in _RATE_REASONS:
                    failed = TransientError(f"Gmail kept failing messages.get (HTTP {status}).")
                out[request_id] = failed
            else:
                out[request_id] = ProtocolError(f"Gmail batch item failed: {exc}")

        batch = BatchHttpRequest(callback=done, batch_uri=self._batch_uri)
        for mid in chunk:
            fmt = "raw" if raw(mid) else "minimal"
            batch.add(self._users.messages().get(userId="me", id=mid, format=fmt), request_id=mid)
        attempt = 0
        while True:
            # Each call in the batch carries its own Authorization (google-auth's apply()).
            self._creds.token = self._source.access_token()
            try:
                batch.execute()
                return again
            except HttpError as exc:  # the batch request itself
                status = exc.resp.status
                if status in (429, 500, 502, 503, 504) and attempt < MAX_RETRIES:
                    SLEEP(_retry_after(exc, attempt))
                    attempt += 1
                    continue
                if status in (429, 500, 502, 503, 504):
                    raise TransientError(
                        f"Gmail is busy (batch messages.get: HTTP {status}); the sync will retry."
                    ) from exc
                raise self._translate(exc, status, _reason(exc), "batch") from exc
            except (TimeoutError, httplib2.HttpLib2Error, OSError) as exc:
                raise TransientError(
                    f"Gmail could not be reached (batch: {type(exc).__name__})."
                ) from exc

    def iter_raw(self, ids: Sequence[str]) -> Iterator[tuple[str, GmailMessage | None]]:
        for message_id in ids:
            yield message_id, self.get(message_id, raw=True)


# -- push: users.watch / users.stop (issue 18, point 3; bot/sync/push.py) ------------------

#: Labels whose changes are pushed: new mail (INBOX) and what the team sends (SENT).
WATCH_LABELS = ("INBOX", "SENT")


@dataclass(frozen=True)
class Watch:
    history_id: str
    expires_at: datetime  # Gmail stops pushing after this (7 days): renew well before


def watch(client: GmailClient, topic: str, labels: Sequence[str] = WATCH_LABELS) -> Watch:
    """Start (or renew: calling again replaces it) pushes to the Pub/Sub ``topic``."""
    body = {"topicName": topic, "labelIds": list(labels), "labelFilterBehavior": "include"}
    result = client._call(client._users.watch(userId="me", body=body), "watch")
    try:
        expires = datetime.fromtimestamp(int(result["expiration"]) / 1000, UTC)
    except (KeyError, ValueError, TypeError) as exc:
        raise ProtocolError("Gmail answered users.watch without an expiration.") from exc
    return Watch(str(result.get("historyId") or ""), expires)


def stop(client: GmailClient) -> None:
    """Stop every push of this mailbox (account removed or paused)."""
    client._call(client._users.stop(userId="me"), "stop")
