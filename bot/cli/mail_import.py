"""Importing mail files: the sources (mbox, Maildir, .eml) and the parse-and-store pipeline.

Kept apart from the `mailroom import` command so that the CLI loads it (SQLAlchemy, the parser)
only when an import runs."""

from __future__ import annotations

import itertools
import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.mail.types import ParsedMessage
from bot.store.db import SessionFactory, session_scope
from bot.store.ingest import IngestItem, ingest_batch, ingest_message
from bot.store.models import Account, Provider
from bot.store.rows import EncodedParse, dialect_key
from bot.sync.parse_pool import ParsedBatch, ParsePool
from bot.sync.prefetch import prefetch

BATCH = 500
# A mail file has "Name: value" header lines within its first few lines.
_HEADER_RE = re.compile(rb"\A(?:[^\n]*\n){0,4}[A-Za-z0-9-]{1,76}:[ \t]")


# --- sources -------------------------------------------------------------------------------


@dataclass
class Item:
    label: str  # where it came from, for error messages
    raw: bytes | None
    seen: bool = False
    error: str | None = None


def _looks_like_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(5) == b"From "
    except OSError:
        return False


def _mbox_items(path: Path) -> Iterator[Item]:
    box = mailbox.mbox(str(path), create=False)
    try:
        for n, key in enumerate(box.iterkeys(), start=1):
            try:
                yield Item(f"{path} #{n}", box.get_bytes(key))
            except Exception as exc:  # one unreadable entry must not stop the rest
                yield Item(f"{path} #{n}", None, error=f"{type(exc).__name__}: {exc}")
    finally:
        box.close()


def _file_items(path: Path) -> Iterator[Item]:
    if _looks_like_mbox(path):
        yield from _mbox_items(path)
        return
    try:
        raw = path.read_bytes()
    except OSError as exc:
        yield Item(str(path), None, error=str(exc))
        return
    if not raw.strip():
        yield Item(str(path), None, error="empty file")
        return
    if not _HEADER_RE.search(raw[:4096]):
        yield Item(str(path), None, error="not an email (no header lines at the top)")
        return
    # Maildir flags live in the file name: "...:2,FS" — S means seen.
    info = path.name.rsplit(":2,", 1)[1] if ":2," in path.name else ""
    yield Item(str(path), raw, seen="S" in info)


def iter_source(path: Path) -> Iterator[Item]:
    """Messages from an mbox file, a Maildir, a .eml file, or a folder of any of those."""
    if path.is_file():
        yield from _file_items(path)
        return
    for sub in sorted(path.rglob("*")):
        if not sub.is_file() or any(
            p.startswith(".") or p == "tmp" for p in sub.relative_to(path).parts
        ):
            continue
        yield from _file_items(sub)


def _account(session: Session, address: str) -> Account:
    account = session.scalar(select(Account).where(func.lower(Account.email) == address.lower()))
    if account is None:
        # Offline import into a mailbox that is not connected yet (docs/search.md).
        account = Account(provider=Provider.IMAP, email=address, config={})
        session.add(account)
        session.flush()
    return account


def import_path(
    factory: SessionFactory,
    path: Path,
    address: str,
    *,
    mark_read: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Import every message under `path` into the account `address`; commits every BATCH.

    The sync engine's pipeline (docs/sync.md): a thread reads the next batch from disk and
    hands it to the parse worker while this thread stores the previous one with
    `ingest_batch`. A batch that fails as a whole is stored message by message, so one bad
    message is reported and skipped and the rest still land."""
    with session_scope(factory) as s:
        account_id = _account(s, address).id
    items = list(_labels(path))
    stats = {"seen": 0, "new": 0, "duplicates": 0, "errors": 0, "conversations": 0}
    bar = click.progressbar(length=len(items), label="Importing", file=None) if progress else None
    bind = factory.kw.get("bind")
    dialect = dialect_key(bind.dialect) if bind is not None else None
    with ParsePool() as pool:

        def batches() -> Iterator[tuple[list[Item], ParsedBatch]]:
            source = iter_source(path)
            while chunk := list(itertools.islice(source, BATCH)):
                yield (
                    chunk,
                    pool.submit([i.raw for i in chunk if i.raw is not None], dialect=dialect),
                )

        pipeline = prefetch(batches(), name="import read")
        try:
            for chunk, parsing in pipeline:
                _import_batch(factory, account_id, chunk, parsing, mark_read, stats)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            pipeline.close()
            if bar is not None:
                bar.render_finish()
    return stats


def _import_batch(
    factory: SessionFactory,
    account_id: int,
    chunk: list[Item],
    parsing: ParsedBatch,
    mark_read: bool,
    stats: dict[str, int],
) -> None:
    stats["seen"] += len(chunk)
    for item in chunk:
        if item.raw is None:
            stats["errors"] += 1
            click.echo(f"\nskipped {item.label}: {item.error}", err=True)
    good = [i for i in chunk if i.raw is not None]
    done = parsing.result()
    none: list[None] = [None] * len(good)
    parsed: list[ParsedMessage | None] = [*(done.parsed or none)]
    encoded: list[EncodedParse | None] = [*(done.encoded or none)]
    with session_scope(factory) as s:
        account = s.get_one(Account, account_id)
        try:
            with s.begin_nested():
                results = ingest_batch(
                    s,
                    account,
                    [
                        IngestItem(i.raw or b"", parsed=p, encoded=e, is_read=mark_read or i.seen)
                        for i, p, e in zip(good, parsed, encoded, strict=True)
                    ],
                )
        except Exception:  # find the bad one: one at a time, each in its own SAVEPOINT
            results = []
            for item in good:
                try:
                    with s.begin_nested():
                        results.append(
                            ingest_message(
                                s, account, item.raw or b"", is_read=mark_read or item.seen
                            )
                        )
                except Exception as exc:  # report, skip, keep going
                    stats["errors"] += 1
                    click.echo(f"\nskipped {item.label}: {type(exc).__name__}: {exc}", err=True)
        for result in results:
            if result.created:
                stats["new"] += 1
                stats["conversations"] += int(result.new_conversation)
            else:
                stats["duplicates"] += 1


def _labels(path: Path) -> Iterator[None]:
    # Counting for the progress bar: one pass over file names (mbox files count their entries).
    if path.is_file():
        if _looks_like_mbox(path):
            box = mailbox.mbox(str(path), create=False)
            try:
                yield from (None for _ in box.iterkeys())
            finally:
                box.close()
        else:
            yield None
        return
    for sub in path.rglob("*"):
        if sub.is_file() and not any(
            p.startswith(".") or p == "tmp" for p in sub.relative_to(path).parts
        ):
            yield from _labels(sub)
