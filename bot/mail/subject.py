"""Subject normalisation for threading (RFC 5256 base subject plus localized prefixes)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

# Reply prefixes seen in the wild, by language. Matched case-insensitively and only when
# followed by ":" so single letters (Italian "R:", "I:") do not eat ordinary words.
REPLY_PREFIXES: tuple[str, ...] = (
    "re",  # en, es, fr, ...
    "aw",  # de
    "sv",  # da, no, sv
    "vs",  # fi
    "antw",  # nl
    "odp",  # pl
    "rif",  # it
    "r",  # it
    "rv",  # es (also "reenviado" abbreviations)
    "res",  # pt
    "ynt",  # tr
    "vá",  # hu
    "atb",  # lv
    "ats",  # lt
    "отв",  # ru
    "ответ",  # ru
    "回复",  # zh-cn
    "回覆",  # zh-tw
    "答复",  # zh
    "返信",  # ja
    "답장",  # ko
    "σχετ",  # el
    "رد",  # ar
    "השב",  # he
)
FORWARD_PREFIXES: tuple[str, ...] = (
    "fwd",
    "fw",
    "wg",  # de
    "vl",  # fi
    "doorst",  # nl
    "pd",  # pl
    "i",  # it
    "tr",  # fr
    "enc",  # pt
    "ilt",  # tr
    "továbbítás",  # hu
    "пересл",  # ru
    "转发",  # zh-cn
    "轉寄",  # zh-tw
    "転送",  # ja
    "전달",  # ko
    "πρθ",  # el
)

_WS = re.compile(r"\s+")
_COUNTER = r"(?:\s*(?:\[\d+\]|\(\d+\)|\^\d+))?"
_BLOB = re.compile(r"^\[[^\[\]]*\]\s*")
_FWD_TRAILER = re.compile(r"\s*\((?:fwd|fw)\)\s*$", re.IGNORECASE)
_FWD_WRAPPER = re.compile(r"^\[\s*(?:fwd|fw)\s*:\s*(.*)\]$", re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=64)
def _prefix_re(words: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first so "fwd" wins over "fw" and "ответ" over "отв".
    alternation = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"^(?:{alternation}){_COUNTER}\s*[:\uff1a]\s*", re.IGNORECASE)


def _all_prefixes(extra: Iterable[str]) -> tuple[str, ...]:
    extra_t = tuple(w.strip().rstrip(":").lower() for w in extra if w.strip())
    return REPLY_PREFIXES + FORWARD_PREFIXES + extra_t


def collapse_ws(text: str) -> str:
    return _WS.sub(" ", text).strip()


def base_subject(subject: str, extra_prefixes: Iterable[str] = ()) -> str:
    """The subject without reply/forward artifacts or list tags, case preserved."""
    pattern = _prefix_re(_all_prefixes(extra_prefixes))
    s = collapse_ws(subject)
    # RFC 5256 §2.1: repeat until nothing changes.
    while True:
        before = s
        s = _FWD_TRAILER.sub("", s).strip()
        while True:
            inner = before_inner = s
            m = pattern.match(inner)
            if m:
                inner = inner[m.end() :]
            else:
                b = _BLOB.match(inner)
                # A blob is removed only if something remains (subject-blob-only-preserved).
                if b and inner[b.end() :].strip():
                    inner = inner[b.end() :]
            s = inner.strip()
            if s == before_inner:
                break
        w = _FWD_WRAPPER.match(s)
        if w and w.group(1).strip():
            s = w.group(1).strip()
        if s == before:
            return s


def normalize_subject(subject: str, extra_prefixes: Iterable[str] = ()) -> str:
    """Comparison key: base subject, whitespace collapsed, casefolded."""
    return base_subject(subject, extra_prefixes).casefold()


def has_reply_prefix(subject: str, extra_prefixes: Iterable[str] = ()) -> bool:
    """True if the subject carries a reply/forward marker (prefix, "(fwd)" or "[Fwd: ...]")."""
    s = collapse_ws(subject)
    if _FWD_TRAILER.search(s) or _FWD_WRAPPER.match(s):
        return True
    pattern = _prefix_re(_all_prefixes(extra_prefixes))
    while True:
        if pattern.match(s):
            return True
        b = _BLOB.match(s)
        if not b:
            return False
        s = s[b.end() :]


def _strip_family(subject: str, words: tuple[str, ...]) -> str:
    pattern = _prefix_re(words)
    s = collapse_ws(subject)
    while m := pattern.match(s):
        s = s[m.end() :]
    return s


def reply_subject(subject: str) -> str:
    """'Re: ' exactly once, replacing any localized reply prefixes already there."""
    return f"Re: {_strip_family(subject, REPLY_PREFIXES)}".rstrip()


def forward_subject(subject: str) -> str:
    """'Fwd: ' exactly once, replacing any forward prefixes already there."""
    return f"Fwd: {_strip_family(subject, FORWARD_PREFIXES)}".rstrip()
