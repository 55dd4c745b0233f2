"""Shared fixtures: the small real public files vendored in ``tests/data`` (see tests/data/README.md).

Each sub-folder keeps the name and layout of its source folder in the developers' ``../shared/data`` and a
``SOURCE.md`` naming the origin, license and how the copy was cut, so a clone runs every test on its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of vendored real data files (``tests/data``); the name is kept for the tests that use it."""
    return TEST_DATA
