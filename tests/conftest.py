"""Shared fixtures. Each part of the harness lives in its own plugin module."""

from __future__ import annotations

import importlib.util


def _exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


pytest_plugins = [
    name
    for name in (
        "tests.dbfixtures",
        "tests.slackfake.fixtures",
        "tests.mailservers.fixtures",
        "tests.appfixtures",
    )
    if _exists(name)
]
