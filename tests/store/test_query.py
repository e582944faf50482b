"""The pure query-language parser and its escaping for FTS5 / tsquery (no database)."""

from __future__ import annotations

from datetime import date

from bot.search.query import fts5_match, parse_query, tsquery_text


def test_operators_and_negation() -> None:
    q = parse_query(
        'invoice "payment due" from:bob@acme.example to:team subject:renewal client:"Acme Co" '
        "account:a@ours.example is:unread has:attachment after:2024-01-01 before:2024-02-01 "
        "-spam -from:noreply@x.example"
    )
    assert [(t.text, t.phrase, t.negated, t.field) for t in q.terms] == [
        ("invoice", False, False, None),
        ("payment due", True, False, None),
        ("renewal", False, False, "subject"),
        ("spam", False, True, None),
    ]
    assert [(f.field, f.value, f.negated) for f in q.filters] == [
        ("from", "bob@acme.example", False),
        ("to", "team", False),
        ("client", "Acme Co", False),
        ("account", "a@ours.example", False),
        ("is", "unread", False),
        ("has", "attachment", False),
        ("from", "noreply@x.example", True),
    ]
    assert (q.after, q.before) == (date(2024, 1, 1), date(2024, 2, 1))
    assert q.errors == []


def test_bad_values_are_reported_not_raised() -> None:
    q = parse_query("is:sideways before:yesterday has:cats hello")
    assert [t.text for t in q.terms] == ["hello"]
    assert len(q.errors) == 3 and not q.filters and q.before is None


def test_unknown_field_is_text_and_punctuation_only_is_dropped() -> None:
    q = parse_query("http://example.com --- ***")
    assert [t.text for t in q.terms] == ["http://example.com"]


def test_fts5_escaping_never_leaks_syntax() -> None:
    q = parse_query('a"b OR NEAR(x) -"c AND d" subject:"x*"')
    expr = fts5_match(q)
    assert expr == '("a""b" AND "OR" AND "NEAR(x)" AND subject : "x*") NOT ("c AND d")'


def test_tsquery_escaping() -> None:
    q = parse_query("it's back\\slash subject:deal -spam")
    assert tsquery_text(q) == "('it''s') & ('back\\\\slash') & ('deal':A) & !('spam')"
    assert tsquery_text(parse_query("-only")) is None
