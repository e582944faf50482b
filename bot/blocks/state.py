"""Reading what a person entered in a submitted modal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def state_values(view: Mapping[str, Any]) -> dict[str, Any]:
    """`view.state.values` (block id -> action id -> element state), {} when absent."""
    return dict((view.get("state") or {}).get("values") or {})
