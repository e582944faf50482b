from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def eml() -> object:
    def load(name: str) -> bytes:
        return (FIXTURES / name).read_bytes()

    return load
