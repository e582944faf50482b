"""The search query language (pure: no database). See docs/search.md.

    invoice "payment due" from:bob@acme.com to:team@ours.com subject:renewal client:Acme
    account:sales@ours.com is:unread has:attachment after:2024-01-01 before:2024-02-01 -spam

Free words and "quoted phrases" search subject, sender and body; every part can be negated
with a leading "-". Unknown `name:value` pairs are searched as text, never an error; a bad
value (a date that is not YYYY-MM-DD, an unknown is:) is reported in `errors` and ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

FIELDS = ("from", "to", "subject", "client", "account", "is", "has", "before", "after")
IS_VALUES: tuple[str, ...] = ("unread", "read", "archived", "linked", "unlinked")
# Team triage views (issue 16): is:mine is:unassigned is:waiting is:snoozed is:unanswered.
TRIAGE_IS_VALUES = ("mine", "unassigned", "waiting", "snoozed", "unanswered")
IS_VALUES += TRIAGE_IS_VALUES
HAS_VALUES = ("attachment",)

# A token: optional "-", optional field:, then a "quoted string" or a bare run of non-space.
_TOKEN_RE = re.compile(r'(-?)(?:([A-Za-z]+):)?(?:"([^"]*)"?|(\S+))')
_WORD_RE = re.compile(r"\w", re.UNICODE)


@dataclass(frozen=True)
class Term:
    """Free text: one word, or a phrase whose words must appear in order."""

    text: str
    phrase: bool = False
    negated: bool = False
    field: str | None = None  # None: any column; "subject": subject only
    # Search as you type: the last word matches as a prefix ("inv" finds "invoice").
    prefix: bool = False


@dataclass(frozen=True)
class Filter:
    field: str  # from | to | client | account | is | has
    value: str
    negated: bool = False


@dataclass
class SearchQuery:
    terms: list[Term] = field(default_factory=list)
    filters: list[Filter] = field(default_factory=list)
    before: date | None = None
    after: date | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def positive_terms(self) -> list[Term]:
        return [t for t in self.terms if not t.negated]

    @property
    def negative_terms(self) -> list[Term]:
        return [t for t in self.terms if t.negated]

    @property
    def has_text(self) -> bool:
        return bool(self.terms)

    def values(self, name: str, *, negated: bool = False) -> list[str]:
        return [f.value for f in self.filters if f.field == name and f.negated == negated]

    @property
    def is_empty(self) -> bool:
        return not (self.terms or self.filters or self.before or self.after)


def has_words(text: str) -> bool:
    """True if the text has something a full-text index can match (letters or digits)."""
    return bool(_WORD_RE.search(text))


def _date(value: str, name: str, errors: list[str]) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append(f"{name}: needs a date as YYYY-MM-DD, got {value!r}")
        return None


def parse_query(text: str) -> SearchQuery:
    """Parse the query language. Never raises."""
    q = SearchQuery()
    # NUL ends an FTS5 string early and PostgreSQL text cannot hold it: it separates words.
    text = (text or "").replace("\x00", " ")
    for m in _TOKEN_RE.finditer(text):
        neg = m.group(1) == "-"
        name = (m.group(2) or "").lower()
        quoted = m.group(3)
        value = quoted if quoted is not None else (m.group(4) or "")
        value = value.strip()
        is_phrase = quoted is not None
        if name and name not in FIELDS:
            # "http://x" or "re:" in a word: keep the whole thing as text.
            value = f"{m.group(2)}:{value}"
            name = ""
        if not name:
            if value and has_words(value):
                q.terms.append(Term(value, phrase=is_phrase or _multiword(value), negated=neg))
            continue
        if not value:
            q.errors.append(f"{name}: needs a value")
            continue
        if name == "subject":
            if has_words(value):
                q.terms.append(
                    Term(value, phrase=is_phrase or _multiword(value), negated=neg, field="subject")
                )
        elif name in ("before", "after"):
            d = _date(value, name, q.errors)
            if d is not None and neg:
                # -before:X is after:X and the other way round.
                name = "after" if name == "before" else "before"
            if d is not None:
                setattr(q, name, d)
        elif name == "is":
            v = value.lower()
            if v not in IS_VALUES:
                q.errors.append(f"is: one of {', '.join(IS_VALUES)}, got {value!r}")
                continue
            q.filters.append(Filter("is", v, neg))
        elif name == "has":
            v = value.lower()
            if v not in HAS_VALUES:
                q.errors.append(f"has: only has:attachment is known, got {value!r}")
                continue
            q.filters.append(Filter("has", v, neg))
        else:
            q.filters.append(Filter(name, value, neg))
    _mark_prefix(q, text)
    return q


# A last word shorter than this matches whole: one letter as a prefix matches most of the
# mail, and the person is still typing.
PREFIX_MIN = 2


def _mark_prefix(q: SearchQuery, text: str) -> None:
    """Search as you type: the query's last part, when it is free text (or subject:) typed
    bare (not a "quoted phrase", not negated) and not yet ended by a space, matches its last
    word as a prefix."""
    if not q.terms or text != text.rstrip():
        return
    last = list(_TOKEN_RE.finditer(text))
    if not last:
        return
    m = last[-1]
    name = (m.group(2) or "").lower()
    if m.group(1) == "-" or m.group(3) is not None or (name in FIELDS and name != "subject"):
        return
    term = q.terms[-1]
    words = term_words(term)
    if term.negated or not words or len(words[-1]) < PREFIX_MIN:
        return
    if m.end() != len(text) or term.text != _token_text(m):
        return
    q.terms[-1] = Term(term.text, term.phrase, term.negated, term.field, prefix=True)


def _token_text(m: re.Match[str]) -> str:
    name = (m.group(2) or "").lower()
    value = (m.group(4) or "").strip()
    if name and name not in FIELDS:
        return f"{m.group(2)}:{value}"
    return value


def _multiword(value: str) -> bool:
    return len(re.findall(r"\w+", value)) > 1


# --- rendering for the two full-text engines (pure string building, fully escaped) ---------


def fts5_string(text: str) -> str:
    """An FTS5 string literal: the user's text can never become FTS5 syntax."""
    return '"' + text.replace('"', '""') + '"'


def fts5_term(term: Term) -> str:
    s = fts5_string(term.text)  # a string of several tokens is a phrase in FTS5
    if term.prefix:
        s += "*"  # FTS5: the string's last token is a prefix (the prefix index, 0012)
    return f"subject : {s}" if term.field == "subject" else s


def fts5_match(query: SearchQuery) -> str | None:
    """The MATCH expression for the positive terms, with the negative ones as `NOT` (FTS5's
    NOT is binary, so it needs at least one positive term). None when there is no positive
    term: negatives alone are applied with fts5_negatives()."""
    pos = [fts5_term(t) for t in query.positive_terms]
    if not pos:
        return None
    expr = " AND ".join(pos)
    neg = [fts5_term(t) for t in query.negative_terms]
    if neg:
        expr = f"({expr}) NOT ({' OR '.join(neg)})"
    return expr


def fts5_negatives(query: SearchQuery) -> str | None:
    neg = [fts5_term(t) for t in query.negative_terms]
    return " OR ".join(neg) if neg else None


def _ts_lexeme(text: str, weight: str | None, prefix: bool = False) -> str:
    # A quoted tsquery operand: to_tsquery still runs it through the 'simple' parser, so a
    # multi-word value becomes a <-> phrase; quotes and backslashes are escaped. `:*` makes
    # it a prefix (of each of its words: a little looser than FTS5 for "a-b", never stricter).
    escaped = text.replace("\\", "\\\\").replace("'", "''")
    label = ("*" if prefix else "") + (weight or "")
    return f"'{escaped}'" + (f":{label}" if label else "")


def tsquery_text(query: SearchQuery, *, weights: bool = True) -> str | None:
    """Text for PostgreSQL `to_tsquery('simple', ...)`: positives AND-ed, negatives as `!`.
    Subject terms carry weight A (the subject's weight in messages.search_vector); with
    `weights=False` they do not: a looser query the GIN index answers without rechecking each
    row (GIN keeps no weights), for a pre-filter whose hits are then checked exactly; negated
    subject terms are left out of it (they must not exclude a body match)."""
    parts: list[str] = []
    for t in query.terms:
        if t.negated and t.field == "subject" and not weights:
            continue
        operand = _ts_lexeme(t.text, "A" if weights and t.field == "subject" else None, t.prefix)
        parts.append(f"!({operand})" if t.negated else f"({operand})")
    if not query.positive_terms:
        return None
    return " & ".join(parts)


def ts_operand(term: Term) -> str:
    """One term as an unweighted `to_tsquery('simple', ...)` operand (a phrase if several words)."""
    return _ts_lexeme(term.text, None, term.prefix)


def term_words(term: Term) -> list[str]:
    """The runs of letters and digits in a term. A row can match the term only if each of
    them is in the row's text: a cheap substring pre-check before the exact one."""
    return re.findall(r"[^\W_]+", term.text)


def tsquery_negatives(query: SearchQuery) -> str | None:
    """For a query with only negated terms: the OR of them (used as NOT (vector @@ q))."""
    neg = [
        f"({_ts_lexeme(t.text, 'A' if t.field == 'subject' else None)})"
        for t in query.negative_terms
    ]
    return " | ".join(neg) if neg else None
