"""Small builders for store tests: accounts and raw messages."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from bot.store.models import Account, Provider


def make_account(session: Session, email: str = "team@ours.example", **kw: object) -> Account:
    account = Account(provider=Provider.IMAP, email=email, config={}, **kw)
    session.add(account)
    session.flush()
    return account


def raw_mail(
    mid: str | None,
    subject: str = "Hello",
    *,
    sender: str = "Bob <bob@acme.example>",
    to: str = "team@ours.example",
    date: str = "Mon, 01 Jan 2024 10:00:00 +0000",
    irt: str | None = None,
    refs: Sequence[str] = (),
    body: str = "hello world",
    extra: str = "",
) -> bytes:
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}", f"Date: {date}"]
    if mid:
        lines.append(f"Message-ID: <{mid}>")
    if irt:
        lines.append(f"In-Reply-To: <{irt}>")
    if refs:
        lines.append("References: " + " ".join(f"<{r}>" for r in refs))
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()
