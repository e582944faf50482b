"""Clients (CRM contacts): create/edit/delete/list, addresses and domains, auto-link matching,
manual link/unlink with an audit trail, CSV import.

Matching rule (docs/clients.md): an exact address wins; otherwise the sender's domain (or a
parent domain: mail.acme.com matches acme.com) unless it is a public webmail domain, where a
domain says nothing about who the sender works for.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from bot.store import audit
from bot.store.models import (
    Client,
    ClientAddress,
    ClientDomain,
    Conversation,
    ConversationLink,
    LinkMethod,
    utcnow,
)

# Public webmail and free-mail domains: a domain here never links a whole company.
WEBMAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "live.com",
        "msn.com",
        "passport.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "aim.com",
        "proton.me",
        "protonmail.com",
        "protonmail.ch",
        "pm.me",
        "tutanota.com",
        "tuta.io",
        "web.de",
        "mail.ru",
        "inbox.ru",
        "list.ru",
        "bk.ru",
        "qq.com",
        "163.com",
        "126.com",
        "yeah.net",
        "sina.com",
        "sohu.com",
        "zoho.com",
        "zohomail.com",
        "mail.com",
        "email.com",
        "fastmail.com",
        "fastmail.fm",
        "hey.com",
        "t-online.de",
        "freenet.de",
        "orange.fr",
        "wanadoo.fr",
        "free.fr",
        "laposte.net",
        "libero.it",
        "virgilio.it",
        "seznam.cz",
        "wp.pl",
        "o2.pl",
        "onet.pl",
        "interia.pl",
        "rambler.ru",
        "naver.com",
        "daum.net",
        "hanmail.net",
        "rediffmail.com",
        "comcast.net",
        "verizon.net",
        "att.net",
        "sbcglobal.net",
        "btinternet.com",
        "hushmail.com",
        "duck.com",
    }
)
# Families with many country variants (hotmail.co.uk, yahoo.fr, gmx.net, yandex.com.tr …).
_WEBMAIL_FAMILIES = ("hotmail", "yahoo", "ymail", "gmx", "yandex", "outlook", "live", "windowslive")

_EMAIL_RE = re.compile(
    r"^[^@\s<>,;\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+$"
)
_DOMAIN_RE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z0-9-]{2,}$")
_SPLIT_RE = re.compile(r"[;\s,]+")


class ClientError(ValueError):
    """A client change that cannot be made; the message says why, for a person to read."""


def normalize_email(value: str) -> str:
    return value.strip().strip("<>").strip().lower()


def normalize_domain(value: str) -> str:
    return value.strip().lstrip("@").strip(".").lower()


def is_webmail_domain(domain: str) -> bool:
    d = normalize_domain(domain)
    if d in WEBMAIL_DOMAINS:
        return True
    first = d.split(".", 1)[0]
    return first in _WEBMAIL_FAMILIES and "." in d


def split_list(value: str) -> list[str]:
    """'a@x; b@y c@z' -> ['a@x', 'b@y', 'c@z'] (CSV cells separate by ; or space)."""
    return [v for v in _SPLIT_RE.split(value or "") if v]


def _check_email(value: str) -> str:
    email = normalize_email(value)
    if not _EMAIL_RE.match(email):
        raise ClientError(f"{value!r} is not an email address")
    return email


def _check_domain(value: str) -> str:
    domain = normalize_domain(value)
    if not _DOMAIN_RE.match(domain):
        raise ClientError(f"{value!r} is not a domain name")
    if is_webmail_domain(domain):
        raise ClientError(f"{domain} is a public webmail domain; add the person's address instead")
    return domain


def _owner_of_address(session: Session, email: str) -> int | None:
    return session.scalar(select(ClientAddress.client_id).where(ClientAddress.email == email))


def _owner_of_domain(session: Session, domain: str) -> int | None:
    return session.scalar(select(ClientDomain.client_id).where(ClientDomain.domain == domain))


def _add_addresses(session: Session, client: Client, emails: Iterable[str]) -> None:
    have = {a.email for a in client.addresses}
    for raw in emails:
        email = _check_email(raw)
        if email in have:
            continue
        owner = _owner_of_address(session, email)
        if owner is not None and owner != client.id:
            raise ClientError(f"{email} already belongs to client #{owner}")
        client.addresses.append(ClientAddress(email=email))
        have.add(email)


def _add_domains(session: Session, client: Client, domains: Iterable[str]) -> None:
    have = {d.domain for d in client.domains}
    for raw in domains:
        domain = _check_domain(raw)
        if domain in have:
            continue
        owner = _owner_of_domain(session, domain)
        if owner is not None and owner != client.id:
            raise ClientError(f"{domain} already belongs to client #{owner}")
        client.domains.append(ClientDomain(domain=domain))
        have.add(domain)


def _snapshot(client: Client) -> dict[str, object]:
    return {
        "name": client.name,
        "company": client.company,
        "emails": sorted(a.email for a in client.addresses),
        "domains": sorted(d.domain for d in client.domains),
    }


def check_client_form(
    session: Session,
    *,
    client_id: int | None,
    name: str,
    emails: Sequence[str] = (),
    domains: Sequence[str] = (),
) -> None:
    """What create_client / edit_client would refuse, found with reads only (a form checks it
    before its ack; the write follows the ack). ClientError says what is wrong."""
    if not " ".join((name or "").split()):
        raise ClientError("a client needs a name")
    if client_id is not None and get_client(session, client_id) is None:
        raise ClientError("This client was deleted meanwhile.")
    for raw in emails:
        owner = _owner_of_address(session, _check_email(raw))
        if owner is not None and owner != client_id:
            raise ClientError(f"{normalize_email(raw)} already belongs to client #{owner}")
    for raw in domains:
        owner = _owner_of_domain(session, _check_domain(raw))
        if owner is not None and owner != client_id:
            raise ClientError(f"{normalize_domain(raw)} already belongs to client #{owner}")


def create_client(
    session: Session,
    *,
    name: str,
    company: str = "",
    emails: Sequence[str] = (),
    domains: Sequence[str] = (),
    notes: str = "",
    actor: str = "cli",
) -> Client:
    name = " ".join((name or "").split())
    if not name:
        raise ClientError("a client needs a name")
    client = Client(
        name=name[:300],
        company=" ".join(company.split())[:300],
        notes=notes,
        created_by=actor[:32] if actor not in ("cli", "system") else None,
    )
    session.add(client)
    _add_addresses(session, client, emails)
    _add_domains(session, client, domains)
    session.flush()
    audit.record(
        session, actor, "client.create", details={"client_id": client.id, **_snapshot(client)}
    )
    return client


def get_client(session: Session, client_id: int) -> Client | None:
    return session.scalar(
        select(Client)
        .where(Client.id == client_id)
        .options(selectinload(Client.addresses), selectinload(Client.domains))
    )


def _require(session: Session, client_id: int) -> Client:
    client = get_client(session, client_id)
    if client is None:
        raise ClientError(f"no client #{client_id}")
    return client


def edit_client(
    session: Session,
    client_id: int,
    *,
    name: str | None = None,
    company: str | None = None,
    notes: str | None = None,
    add_emails: Sequence[str] = (),
    remove_emails: Sequence[str] = (),
    add_domains: Sequence[str] = (),
    remove_domains: Sequence[str] = (),
    actor: str = "cli",
) -> Client:
    client = _require(session, client_id)
    before = _snapshot(client)
    if name is not None:
        name = " ".join(name.split())
        if not name:
            raise ClientError("a client needs a name")
        client.name = name[:300]
    if company is not None:
        client.company = " ".join(company.split())[:300]
    if notes is not None:
        client.notes = notes
    drop_e = {normalize_email(e) for e in remove_emails}
    for a in [a for a in client.addresses if a.email in drop_e]:
        client.addresses.remove(a)
    drop_d = {normalize_domain(d) for d in remove_domains}
    for d in [d for d in client.domains if d.domain in drop_d]:
        client.domains.remove(d)
    session.flush()  # deletes first, so an address can move between spellings in one edit
    _add_addresses(session, client, add_emails)
    _add_domains(session, client, add_domains)
    session.flush()
    audit.record(
        session,
        actor,
        "client.edit",
        details={"client_id": client.id, "before": before, "after": _snapshot(client)},
    )
    return client


def delete_client(session: Session, client_id: int, *, actor: str = "cli") -> None:
    """Delete a client; its conversation links go with it (the conversations stay)."""
    client = _require(session, client_id)
    linked = session.scalar(
        select(func.count())
        .select_from(ConversationLink)
        .where(ConversationLink.client_id == client_id)
    )
    audit.record(
        session,
        actor,
        "client.delete",
        details={"client_id": client_id, **_snapshot(client), "links_removed": linked or 0},
    )
    session.delete(client)
    session.flush()


def _client_filter(query: str | None) -> ColumnElement[bool] | None:
    """Name, company, an address or a domain contains `query` (case-insensitive); None: all."""
    if not query or not query.strip():
        return None
    like = (
        "%"
        + query.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        + "%"
    )
    return or_(
        func.lower(Client.name).like(like, escape="\\"),
        func.lower(Client.company).like(like, escape="\\"),
        Client.id.in_(
            select(ClientAddress.client_id).where(ClientAddress.email.like(like, escape="\\"))
        ),
        Client.id.in_(
            select(ClientDomain.client_id).where(ClientDomain.domain.like(like, escape="\\"))
        ),
    )


def list_clients(
    session: Session, *, query: str | None = None, limit: int = 100, offset: int = 0
) -> list[Client]:
    """Clients by name; `query` matches name, company, an address or a domain (substring)."""
    stmt = select(Client).options(selectinload(Client.addresses), selectinload(Client.domains))
    where = _client_filter(query)
    if where is not None:
        stmt = stmt.where(where)
    stmt = stmt.order_by(func.lower(Client.name), Client.id).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def count_clients(session: Session, *, query: str | None = None) -> int:
    """How many clients `list_clients` pages through for the same query."""
    stmt = select(func.count(Client.id))
    where = _client_filter(query)
    if where is not None:
        stmt = stmt.where(where)
    return int(session.scalar(stmt) or 0)


def _domain_candidates(domain: str) -> list[str]:
    # mail.eu.acme.com -> [mail.eu.acme.com, eu.acme.com, acme.com]; never a bare TLD.
    parts = domain.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1)]


def find_client_for_address(session: Session, address: str) -> Client | None:
    """The client an address belongs to: exact address first, then its (non-webmail) domain."""
    email = normalize_email(address)
    if "@" not in email:
        return None
    client_id = _owner_of_address(session, email)
    if client_id is None:
        domain = email.rsplit("@", 1)[1]
        if is_webmail_domain(domain):
            return None
        candidates = _domain_candidates(domain)
        rows = session.execute(
            select(ClientDomain.domain, ClientDomain.client_id).where(
                ClientDomain.domain.in_(candidates)
            )
        ).all()
        by_domain = {d: cid for d, cid in rows}
        for cand in candidates:  # most specific first
            if cand in by_domain:
                client_id = by_domain[cand]
                break
    return session.get(Client, client_id) if client_id is not None else None


def clients_for_addresses(session: Session, addresses: Iterable[str]) -> dict[str, int]:
    """`find_client_for_address` for many addresses in two queries (the ingest hot path):
    normalized address -> client id, for the addresses that have a client."""
    emails = sorted({e for e in map(normalize_email, addresses) if "@" in e})
    found: dict[str, int] = {}
    for i in range(0, len(emails), 500):
        chunk = emails[i : i + 500]
        found.update(
            session.execute(
                select(ClientAddress.email, ClientAddress.client_id).where(
                    ClientAddress.email.in_(chunk)
                )
            ).all()
        )
    rest = {
        e: _domain_candidates(e.rsplit("@", 1)[1])
        for e in emails
        if e not in found and not is_webmail_domain(e.rsplit("@", 1)[1])
    }
    domains = sorted({d for cands in rest.values() for d in cands})
    by_domain: dict[str, int] = {}
    for i in range(0, len(domains), 500):
        by_domain.update(
            session.execute(
                select(ClientDomain.domain, ClientDomain.client_id).where(
                    ClientDomain.domain.in_(domains[i : i + 500])
                )
            ).all()
        )
    for email, cands in rest.items():
        hit = next((by_domain[c] for c in cands if c in by_domain), None)  # most specific first
        if hit is not None:
            found[email] = hit
    return found


def auto_link(
    session: Session,
    conversation: Conversation,
    address: str | None,
    *,
    is_new: bool = False,
    client_id: int | None = None,
) -> int | None:
    """Link a conversation that has no link yet to the client owning `address`. Returns the
    client id linked now, or None. Used by ingest for new conversations (`is_new` skips the
    lazy load of a link that cannot exist yet; `client_id` is the owner already looked up by
    `clients_for_addresses`)."""
    if not address:
        return None
    if not is_new and conversation.link is not None:
        return None
    if client_id is None:
        client = find_client_for_address(session, address)
        if client is None:
            return None
        client_id = client.id
    conversation.link = ConversationLink(
        client_id=client_id, method=LinkMethod.AUTO, linked_by=None, linked_at=utcnow()
    )
    session.flush()
    audit.record(
        session,
        "system",
        "auto_link",
        account_id=conversation.account_id,
        conversation_id=conversation.id,
        details={"client_id": client_id, "address": normalize_email(address)},
    )
    return client_id


def link_conversation(
    session: Session, conversation_id: int, client_id: int, *, actor: str
) -> ConversationLink:
    """Manual link (replaces any earlier link), recording who and when, plus an audit row."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise ClientError(f"no conversation #{conversation_id}")
    if session.get(Client, client_id) is None:
        raise ClientError(f"no client #{client_id}")
    previous = conversation.link
    previous_id = previous.client_id if previous else None
    now = utcnow()
    if previous is None:
        conversation.link = ConversationLink(
            client_id=client_id, method=LinkMethod.MANUAL, linked_by=actor[:32], linked_at=now
        )
    else:
        previous.client_id = client_id
        previous.method = LinkMethod.MANUAL
        previous.linked_by = actor[:32]
        previous.linked_at = now
    session.flush()
    audit.record(
        session,
        actor,
        "link",
        account_id=conversation.account_id,
        conversation_id=conversation_id,
        details={"client_id": client_id, "previous_client_id": previous_id},
    )
    assert conversation.link is not None
    return conversation.link


def unlink_conversation(session: Session, conversation_id: int, *, actor: str) -> bool:
    """Remove a conversation's link. False if it had none (nothing recorded)."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        raise ClientError(f"no conversation #{conversation_id}")
    link = conversation.link
    if link is None:
        return False
    client_id, method = link.client_id, link.method
    conversation.link = None
    session.flush()
    audit.record(
        session,
        actor,
        "unlink",
        account_id=conversation.account_id,
        conversation_id=conversation_id,
        details={"client_id": client_id, "method": str(method)},
    )
    return True


# --- CSV import ----------------------------------------------------------------------------


@dataclass
class RowError:
    line: int
    message: str


@dataclass
class ImportReport:
    created: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


REQUIRED_COLUMNS = ("name",)
KNOWN_COLUMNS = ("name", "company", "emails", "domains")


def import_clients_csv(session: Session, text: str, *, actor: str = "cli") -> ImportReport:
    """Import clients from CSV text with a header row: name, company, emails, domains.

    Emails/domains are separated by ";" or spaces. A row whose name matches an existing client
    (case-insensitively) adds its addresses to that client. Each row runs in a SAVEPOINT: a bad
    row is reported with its line number and skipped, good rows are kept.
    """
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "name" not in header:
        report.errors.append(RowError(1, "the header row must name a 'name' column"))
        return report
    reader.fieldnames = header
    while True:
        start_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.errors.append(RowError(start_line, f"unreadable CSV: {exc}"))
            break
        line = start_line
        if None in row:
            report.errors.append(RowError(line, "more cells than header columns"))
            continue
        name = " ".join((row.get("name") or "").split())
        if not name and not any((v or "").strip() for v in row.values()):
            continue  # blank line
        emails = split_list(row.get("emails") or "")
        domains = split_list(row.get("domains") or "")
        try:
            with session.begin_nested():
                if not name:
                    raise ClientError("missing name")
                existing = session.scalar(
                    select(Client)
                    .where(func.lower(Client.name) == name.lower())
                    .options(selectinload(Client.addresses), selectinload(Client.domains))
                    .limit(1)
                )
                if existing is None:
                    client = create_client(
                        session,
                        name=name,
                        company=row.get("company") or "",
                        emails=emails,
                        domains=domains,
                        actor=actor,
                    )
                    report.created.append(client.id)
                else:
                    client = edit_client(
                        session,
                        existing.id,
                        company=row.get("company") if row.get("company") else None,
                        add_emails=emails,
                        add_domains=domains,
                        actor=actor,
                    )
                    report.updated.append(client.id)
        except ClientError as exc:
            report.errors.append(RowError(line, str(exc)))
        except IntegrityError as exc:
            report.errors.append(RowError(line, f"conflicts with existing data: {exc.orig}"))
    return report
