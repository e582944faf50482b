"""Attachments by part index, from one parse and one walk of the message.

A dict view of `bot.mail.parse.extract_attachments` for callers that look parts up by the
index parse_message gave them (the thread's file uploads, forwards)."""

from __future__ import annotations

from collections.abc import Iterable

from bot.mail import parse


def extract_attachments(raw: bytes, part_indexes: Iterable[int]) -> dict[int, bytes]:
    """{part index: decoded bytes} for the wanted parts; parts that are absent are left out."""
    wanted = list(part_indexes)
    if not wanted:
        return {}
    found = parse.extract_attachments(raw, wanted, limit=len(wanted))
    return {info.part_index: data for info, data in found}
