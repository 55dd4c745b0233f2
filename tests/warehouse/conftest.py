"""Fixtures of the warehouse tests: an empty warehouse folder and its lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.lake import Lake


@pytest.fixture
def wh(tmp_path: Path) -> Path:
    """A warehouse folder that does not exist yet."""
    return tmp_path / "wh"


@pytest.fixture
def lake(wh: Path) -> Lake:
    """The lake inside ``wh``."""
    return Lake(wh / "lake")
