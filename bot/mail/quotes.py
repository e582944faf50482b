"""Trim quoted history and signatures from a plain-text body (for snippets and the Slack view)."""

from __future__ import annotations

import re

# "On <date>, <who> wrote:" and its translations; the header may wrap onto a second line.
_ATTRIBUTION_START = re.compile(
    r"^\s*(on|am|le|el|il|op|em|den|på|w dniu|dne|в|el día)\b", re.IGNORECASE
)
_ATTRIBUTION_END = re.compile(
    r"(wrote|schrieb|a écrit|escribió|ha scritto|schreef|escreveu|skrev|napisał|napsal|"
    r"пишет|написал|kirjoitti)\b[^\n]*:\s*$",
    re.IGNORECASE,
)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(original message|ursprüngliche nachricht|message d'origine|"
    r"mensaje original|messaggio originale|oorspronkelijk bericht|originalmeddelande)\s*-{2,}\s*$",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(from|von|de|van|da|från|od)\s*:\*?\s+\S", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(
    r"^\s*\*?(sent|date|gesendet|datum|envoyé|enviado|inviato|verzonden|skickat|wysłane|to|an|"
    r"subject|betreff|objet|asunto)\s*:",
    re.IGNORECASE,
)
# First letters of the words _OUTLOOK_FROM accepts: a cheap test before the regex (most body
# lines with a colon are not "From:" lines).
_OUTLOOK_INITIALS = frozenset("fFvVdDoO")
_RULE = re.compile(r"^\s*_{10,}\s*$")
_SIG = re.compile(r"^-- ?$")
_MOBILE_SIG = re.compile(r"^\s*(sent from my|get outlook for|von meinem .* gesendet)", re.I)


def _history_start(lines: list[str]) -> int | None:
    """Index of the first line of quoted history, or None."""
    for i, line in enumerate(lines):
        # Every marker below contains ":" or "--"; most body lines have neither (hot path).
        if ":" not in line and "\uff1a" not in line and "--" not in line:
            continue
        if "--" in line and _ORIGINAL_MESSAGE.match(line):
            return i
        if line.rstrip().endswith(":") and _ATTRIBUTION_END.search(line):
            # The attribution may have wrapped: find its "On ..." start up to two lines back.
            for back in range(0, 3):
                j = i - back
                if j >= 0 and _ATTRIBUTION_START.match(lines[j]):
                    return j
            if i + 1 < len(lines) and lines[i + 1].lstrip().startswith(">"):
                return i
        if (
            line.lstrip().lstrip("*")[:1] in _OUTLOOK_INITIALS
            and _OUTLOOK_FROM.match(line)
            and any(_OUTLOOK_NEXT.match(s) for s in lines[i + 1 : i + 4])
        ):
            # An Outlook header block, possibly preceded by a horizontal rule.
            return i - 1 if i and _RULE.match(lines[i - 1]) else i
    return None


def trim_quoted(text: str) -> str:
    """Remove quoted history (attribution lines, "> " lines, Outlook headers) and signatures.

    Returns the new content only, line structure kept. If everything would be removed (a bare
    forward, say) the original text is returned minus "> " markers, so a snippet is never
    empty when the body is not.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = _history_start(lines)
    if cut is not None:
        lines = lines[:cut]
    kept: list[str] = []
    for line in lines:
        if line.startswith("--") and _SIG.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    while kept and (not kept[-1].strip() or _MOBILE_SIG.match(kept[-1])):
        kept.pop()
    # One slice, not a pop(0) per leading blank line (quadratic on a body of blank lines).
    first = next((i for i, line in enumerate(kept) if line.strip()), len(kept))
    result = "\n".join(kept[first:])
    if result.strip():
        return result
    fallback = [ln.lstrip("> ").rstrip() for ln in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(fallback).strip()
