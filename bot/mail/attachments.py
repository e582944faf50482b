"""Every attachment of a message from one parse and one walk of the MIME tree.

`extract_attachment` (bot/mail/parse.py) re-parses the whole message for each attachment, which
is O(parts x size) for a message with many parts. Posting an email's attachments to Slack asks
for all of them at once, so it uses this instead. (A temporary copy: the parsing work in h15-parse
replaces it with the shared single-walk extractor at merge.)
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.mail.parse import _Defects, _parse_bytes, _payload_bytes, _walk


def extract_attachments(raw: bytes, part_indexes: Iterable[int]) -> dict[int, bytes]:
    """{part index: decoded bytes} for the wanted parts (as numbered by parse_message); parts
    that are absent are left out. The walk stops after the last wanted part."""
    wanted = set(part_indexes)
    if not wanted:
        return {}
    last = max(wanted)
    defects = _Defects()
    out: dict[int, bytes] = {}
    for index, part, _attached in _walk(_parse_bytes(bytes(raw))):
        if index > last:
            break
        if index in wanted:
            out[index] = _payload_bytes(part, defects, f"part {index}")
    return out
