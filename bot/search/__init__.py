"""The search query language: pure parsing and rendering, no database (see bot/store/search.py)."""

from bot.search.query import Filter, SearchQuery, Term, parse_query

__all__ = ["Filter", "SearchQuery", "Term", "parse_query"]
