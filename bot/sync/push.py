"""Push notifications for Gmail and Microsoft 365 accounts, with polling as the fallback.

* **Gmail**: ``users.watch`` publishes to a Cloud Pub/Sub topic; a push subscription POSTs to
  ``/push/gmail`` with an OIDC token signed by Google for a chosen service account. The token
  is verified (signature against Google's certificates, issuer, audience = the endpoint,
  the service account's email); the message carries only ``{emailAddress, historyId}``.
  Without a public URL the worker pulls a Pub/Sub pull subscription instead
  (:class:`GmailPuller`).
* **Microsoft Graph**: a subscription per mailbox on ``me/mailFolders('inbox')/messages``
  POSTs change notifications to ``/push/graph``; each must carry the subscription's
  ``clientState`` (a random secret stored encrypted). Lifecycle notifications go to
  ``/push/graph/lifecycle``.

A believed notification never syncs inline: it marks the account due in the store
(bot/store/push.py), so whichever worker claims it next runs the existing incremental sync
(history.list / delta), which stays the source of truth. So a duplicated notification doubles
nothing (the sync is idempotent, and a Gmail historyId already seen triggers nothing), and a
missed one is caught by the next notification or by polling (every 60 s without push).

Watches and subscriptions are opened, renewed and closed by :class:`PushKeeper`, a periodic
job in the worker held by one replica at a time (a JobLock lease).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select

from bot.providers import gmail as gmail_api
from bot.providers import graph as graph_api
from bot.providers.errors import ProviderError
from bot.services import Services
from bot.store.db import session_scope
from bot.store.models import Account, AccountStatus, Provider, PushChannel, utcnow
from bot.store.push import claim_job, make_due, newer_history

log = logging.getLogger(__name__)

GMAIL_PATH = "/push/gmail"
GRAPH_PATH = "/push/graph"
GRAPH_LIFECYCLE_PATH = "/push/graph/lifecycle"
GMAIL_WATCH = "gmail_watch"
GRAPH_SUBSCRIPTION = "graph_subscription"
GRAPH_RESOURCE = "{root}/mailFolders('inbox')/messages"  # root: "me" or "users/{mailbox}"
#: A watch lasts 7 days; Google recommends renewing daily.
GMAIL_RENEW_EVERY = timedelta(days=1)
RETRY_AFTER_ERROR = timedelta(minutes=5)
KEEPER_JOB = "push-keeper"
KEEPER_SECONDS = 60.0
_GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
_CERTS_TTL = 300.0
_REFETCH_SECONDS = 30.0
_SYNCABLE = (AccountStatus.ACTIVE, AccountStatus.ERROR)


def _api_clients() -> Any:
    # The sync package's public client builders (kept by the api_sync facade).
    from bot.sync import api_sync

    return api_sync


# -- verifying Google's push token -----------------------------------------------------------


class _CachedRequest:
    """google-auth transport that keeps fetched certificates for a few minutes: Google rotates
    them daily, and fetching them per push would make every push cost a round trip."""

    def __init__(self) -> None:
        from google.auth.transport.requests import Request

        self._inner = Request()
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(url)
            if method == "GET" and hit is not None and now - hit[0] < _CERTS_TTL:
                return hit[1]
        response = self._inner(url, method=method, timeout=10, **kwargs)
        if method == "GET" and response.status == 200:
            with self._lock:
                self._cache[url] = (now, response)
        return response

    def expect_key(self, url: str, kid: str) -> None:
        """Google signs with a new key before the cached list may show it: a token naming a
        key we do not have refetches the list, at most every _REFETCH_SECONDS (a stream of
        forged tokens must not turn into a stream of fetches)."""
        with self._lock:
            hit = self._cache.get(url)
            if hit is None or time.monotonic() - hit[0] < _REFETCH_SECONDS:
                return
            try:
                data = json.loads(hit[1].data)
                kids = {k.get("kid") for k in data["keys"]} if "keys" in data else set(data)
            except (ValueError, KeyError, TypeError, AttributeError):
                kids = set()
            if kid not in kids:
                del self._cache[url]


_certs_request: _CachedRequest | None = None


class PushRefused(Exception):
    """The push is not from Google's Pub/Sub for this deployment."""


def verify_google_token(
    token: str, *, audience: str, service_account: str, certs_url: str
) -> dict[str, Any]:
    """Claims of a valid Pub/Sub push token, else PushRefused (reason only, never the token)."""
    global _certs_request
    from google.auth import exceptions
    from google.oauth2 import id_token

    if _certs_request is None:
        _certs_request = _CachedRequest()
    try:
        from google.auth import jwt

        _certs_request.expect_key(certs_url, str(jwt.decode_header(token).get("kid") or ""))
    except (ValueError, TypeError):
        pass  # not even a JWT: verify_token says why below
    try:
        claims = dict(
            id_token.verify_token(
                token,
                _certs_request,  # type: ignore[arg-type]  # a transport.Request in all but name
                audience=audience,
                certs_url=certs_url,
                clock_skew_in_seconds=10,
            )
        )
    except (ValueError, exceptions.GoogleAuthError) as exc:
        raise PushRefused(f"token rejected: {type(exc).__name__}: {str(exc)[:120]}") from exc
    if claims.get("iss") not in _GOOGLE_ISSUERS:
        raise PushRefused("token rejected: wrong issuer")
    email = str(claims.get("email") or "").lower()
    if email != service_account.lower() or claims.get("email_verified") is not True:
        raise PushRefused("token rejected: signed for another service account")
    return claims


# -- receiving ---------------------------------------------------------------------------------


@dataclass
class PushReply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    accounts: list[int] = field(default_factory=list)  # marked due: the caller may run them now


def receive_gmail(
    services: Services, authorization: str | None, body: bytes, *, now: datetime | None = None
) -> PushReply:
    """A Pub/Sub push. 2xx acknowledges (Pub/Sub stops redelivering); a refused token gets
    401/403. A message Mailroom cannot use is acknowledged too, so it is not redelivered."""
    settings = services.settings
    audience = settings.gmail_push_expected_audience
    if not settings.gmail_push or not audience or not settings.gmail_push_service_account:
        return PushReply(404, b"push not configured")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return PushReply(401, b"missing bearer token")
    try:
        verify_google_token(
            token.strip(),
            audience=audience,
            service_account=settings.gmail_push_service_account,
            certs_url=settings.google_certs_url,
        )
    except PushRefused as exc:
        log.warning("Gmail push refused: %s", exc)
        return PushReply(403, b"forbidden")
    try:
        data_b64 = json.loads(body)["message"]["data"]
    except (ValueError, KeyError, TypeError):
        data_b64 = None
    account_id = gmail_notification(services, data_b64, now=now)
    return PushReply(204, accounts=[account_id] if account_id is not None else [])


def gmail_notification(
    services: Services, data_b64: object, *, now: datetime | None = None
) -> int | None:
    """A Pub/Sub message's data (pushed or pulled): mark the account due when the historyId
    is newer than any seen; returns that account's id, else None (nothing to do)."""
    try:
        data = json.loads(base64.b64decode(str(data_b64), validate=False))
        address = str(data["emailAddress"]).strip().lower()
        history_id = int(data["historyId"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        log.warning("Gmail notification without emailAddress/historyId: acknowledged, dropped")
        return None
    now = now or utcnow()
    with session_scope(services.session_factory) as session:
        account_id = session.scalar(
            select(Account.id).where(
                Account.provider == Provider.GMAIL, func.lower(Account.email) == address
            )
        )
        # No account, or no watch of ours: a stale watch (the account was removed); no row
        # to remember historyIds by means a replay could not be told apart either.
        if account_id is None or not newer_history(session, account_id, history_id, now):
            return None
        make_due(session, account_id, now)
    return account_id


class GmailPuller:
    """Pull delivery, for installs Google cannot reach: the worker pulls the Gmail topic's
    pull subscription (``projects/P/subscriptions/S:pull``), hands each message to
    :func:`gmail_notification` and acknowledges it. Every replica may pull: Pub/Sub hands
    each message to one of them, and a message not acknowledged is delivered again."""

    def __init__(
        self,
        services: Services,
        *,
        session: Any = None,
        on_due: Callable[[int], None] | None = None,
        wait_seconds: float = 10.0,
    ) -> None:
        self.services = services
        self._session = session  # an authorised requests session; default from settings
        self.on_due = on_due
        self.wait_seconds = wait_seconds

    def _http(self) -> Any:
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession
            from google.oauth2 import service_account

            scopes = ["https://www.googleapis.com/auth/pubsub"]
            path = self.services.settings.gmail_pull_credentials
            if path:
                creds = service_account.Credentials.from_service_account_file(path, scopes=scopes)
            else:
                creds, _project = google.auth.default(scopes=scopes)
            self._session = AuthorizedSession(creds)
        return self._session

    def pull_once(self, *, max_messages: int = 100) -> int:
        """One pull (the server may hold it open a while); returns the messages handled."""
        settings = self.services.settings
        url = f"{settings.pubsub_api_url.rstrip('/')}/{settings.gmail_pull_subscription}"
        http = self._http()
        resp = http.post(f"{url}:pull", json={"maxMessages": max_messages}, timeout=60)
        resp.raise_for_status()
        received = resp.json().get("receivedMessages") or []
        acks = []
        for item in received:
            account_id = gmail_notification(self.services, (item.get("message") or {}).get("data"))
            if account_id is not None and self.on_due is not None:
                self.on_due(account_id)
            acks.append(item["ackId"])
        if acks:  # after the marks are committed: a crash before this redelivers them
            http.post(f"{url}:acknowledge", json={"ackIds": acks}, timeout=30).raise_for_status()
        return len(received)

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                if self.pull_once() == 0:
                    stop.wait(1.0)
            except Exception as exc:  # network or auth trouble: polling covers meanwhile
                log.warning("pulling Gmail notifications failed: %s", type(exc).__name__)
                stop.wait(self.wait_seconds)


def receive_graph(
    services: Services,
    validation_token: str | None,
    body: bytes,
    *,
    now: datetime | None = None,
) -> PushReply:
    """Graph change and lifecycle notifications (one endpoint handles both shapes).

    The subscription handshake: echo ``validationToken`` as text/plain at once. Then every
    notification's ``clientState`` must match its subscription's; the others are ignored
    (still 202: Graph would only retry them)."""
    if not services.settings.graph_push:
        return PushReply(404, b"push not configured")
    if validation_token is not None:
        return PushReply(200, validation_token[:2048].encode())
    try:
        items = json.loads(body)["value"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return PushReply(400, b"bad notification")
    now = now or utcnow()
    due: list[int] = []
    refused = 0
    with session_scope(services.session_factory) as session:
        for item in items[:1000]:
            if not isinstance(item, dict):
                refused += 1
                continue
            row = session.scalar(
                select(PushChannel).where(
                    PushChannel.kind == GRAPH_SUBSCRIPTION,
                    PushChannel.external_id == str(item.get("subscriptionId") or ""),
                )
            )
            if row is None or not _state_matches(services, row, item.get("clientState")):
                refused += 1
                continue
            event = item.get("lifecycleEvent")
            if event == "reauthorizationRequired":
                row.renew_after = now  # the keeper renews it on its next round
            elif event == "subscriptionRemoved":
                row.external_id = None  # the keeper creates a new one
                row.renew_after = now
            if row.account_id not in due:
                due.append(row.account_id)  # a change, `missed`, or anything else: sync
            make_due(session, row.account_id, now)
    if refused:
        log.warning("Graph push: %d notification(s) with an unknown clientState ignored", refused)
    return PushReply(202, accounts=due)


def _state_matches(services: Services, row: PushChannel, given: object) -> bool:
    if not row.client_state or not isinstance(given, str):
        return False
    try:
        expected = str(services.vault.decrypt(row.client_state).get("client_state") or "")
    except Exception:
        return False
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


# -- opening, renewing, closing -----------------------------------------------------------------


def _wanted(services: Services, account: Account) -> bool:
    settings = services.settings
    if account.status not in _SYNCABLE:
        return False  # paused or waiting for re-authorisation: no pushes
    if account.provider == Provider.GMAIL:
        return settings.gmail_push
    if account.provider == Provider.GRAPH:
        return settings.graph_push and bool(settings.public_url)
    return False


class PushKeeper:
    """Opens, renews and closes push channels; one replica at a time (a JobLock lease)."""

    def __init__(
        self,
        services: Services,
        *,
        owner: str,
        tick_seconds: float = KEEPER_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.services = services
        self.owner = owner
        self.tick_seconds = tick_seconds
        self.clock = clock  # injectable: tests move time forward

    def tick(self) -> dict[str, int]:
        """One round; returns what it did (``opened``, ``renewed``, ``closed``, ``failed``)."""
        now = self.clock()
        done = {"opened": 0, "renewed": 0, "closed": 0, "failed": 0}
        factory = self.services.session_factory
        if not claim_job(factory, KEEPER_JOB, self.owner, seconds=self.tick_seconds * 3, now=now):
            return done  # another replica holds the job
        with session_scope(factory) as session:
            accounts = list(
                session.scalars(
                    select(Account).where(Account.provider.in_((Provider.GMAIL, Provider.GRAPH)))
                )
            )
            rows = {r.account_id: r for r in session.scalars(select(PushChannel))}
            for account in accounts:
                session.expunge(account)
            plan = [
                (
                    account,
                    _wanted(self.services, account),
                    rows[account.id].renew_after if account.id in rows else None,
                    account.id in rows,
                )
                for account in accounts
            ]
        for account, wanted, renew_after, exists in plan:
            try:
                if wanted and (not exists or renew_after is None or renew_after <= now):
                    done["renewed" if exists else "opened"] += 1
                    self._open(account, now)
                elif not wanted and exists:
                    close(self.services, account.id)
                    done["closed"] += 1
            except ProviderError as exc:
                done["failed"] += 1
                self._failed(account, now, exc)
        return done

    def _open(self, account: Account, now: datetime) -> None:
        if account.provider == Provider.GMAIL:
            self._open_gmail(account, now)
        else:
            self._open_graph(account, now)

    def _open_gmail(self, account: Account, now: datetime) -> None:
        topic = self.services.settings.gmail_push_topic or ""
        client = _api_clients().gmail_client(self.services, account)
        watch = gmail_api.watch(client, topic)  # calling again renews it
        with session_scope(self.services.session_factory) as session:
            row = _row(session, account.id, GMAIL_WATCH)
            row.expires_at = watch.expires_at
            row.renew_after = min(now + GMAIL_RENEW_EVERY, watch.expires_at - timedelta(hours=1))
            row.last_error = None

    def _open_graph(self, account: Account, now: datetime) -> None:
        base = self.services.settings.public_url or ""
        with session_scope(self.services.session_factory) as session:
            current = session.scalar(
                select(PushChannel.external_id).where(PushChannel.account_id == account.id)
            )
        with _api_clients().graph_client(self.services, account) as client:
            sub = None
            if current:
                try:
                    sub = graph_api.renew_subscription(client, current, now=now)
                except graph_api.NotFound:
                    sub = None  # Graph removed it: make a new one
            state = None
            if sub is None:
                state = secrets.token_urlsafe(48)  # Graph allows up to 128 characters
                sub = graph_api.create_subscription(
                    client,
                    # A shared mailbox's client works under users/{mailbox} (issue 18 point 2).
                    resource=GRAPH_RESOURCE.format(root=client.root),
                    notification_url=base + GRAPH_PATH,
                    lifecycle_url=base + GRAPH_LIFECYCLE_PATH,
                    client_state=state,
                    now=now,
                )
        with session_scope(self.services.session_factory) as session:
            row = _row(session, account.id, GRAPH_SUBSCRIPTION)
            if state is not None:
                row.external_id = sub.id
                row.client_state = self.services.vault.encrypt({"client_state": state})
                make_due(session, account.id, now)  # changes before it existed: one sync
            row.expires_at = sub.expires_at
            row.renew_after = now + (sub.expires_at - now) / 2  # renew at half-life
            row.last_error = None

    def _failed(self, account: Account, now: datetime, exc: ProviderError) -> None:
        log.warning("push channel for %s: %s", account.email, type(exc).__name__)
        kind = GMAIL_WATCH if account.provider == Provider.GMAIL else GRAPH_SUBSCRIPTION
        with session_scope(self.services.session_factory) as session:
            if session.get(Account, account.id) is None:
                return
            row = _row(session, account.id, kind)
            row.last_error = str(exc)[:500]  # polling every 60 s takes over meanwhile
            row.renew_after = now + RETRY_AFTER_ERROR

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a bad round must not end the loop; the next one retries
                log.exception("push keeper round failed")
            stop.wait(self.tick_seconds)


def _row(session: Any, account_id: int, kind: str) -> PushChannel:
    row = session.scalar(select(PushChannel).where(PushChannel.account_id == account_id))
    if row is None:
        row = PushChannel(account_id=account_id, kind=kind)
        session.add(row)
    return row


def close(services: Services, account_id: int) -> None:
    """Stop the account's watch / delete its subscription, then forget it. Best effort: one
    that cannot be stopped expires by itself within 7 days, and its pushes find no account
    (or no matching clientState) and change nothing."""
    with session_scope(services.session_factory) as session:
        account = session.get(Account, account_id)
        row = session.scalar(select(PushChannel).where(PushChannel.account_id == account_id))
        if account is None or row is None:
            return
        session.expunge(account)
        external_id = row.external_id
    try:
        if account.provider == Provider.GMAIL:
            gmail_api.stop(_api_clients().gmail_client(services, account))
        elif external_id:
            with _api_clients().graph_client(services, account) as client:
                graph_api.delete_subscription(client, external_id)
    except Exception as exc:  # removal must not fail because the provider did
        log.warning("could not stop push for %s: %s", account.email, type(exc).__name__)
    with session_scope(services.session_factory) as session:
        session.execute(delete(PushChannel).where(PushChannel.account_id == account_id))
