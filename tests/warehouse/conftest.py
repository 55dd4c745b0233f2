"""Fixtures of the warehouse tests: an empty warehouse folder and its lake, and the bundled examples built once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from warehouse.cli import main
from warehouse.lake import Lake


@pytest.fixture
def wh(tmp_path: Path) -> Path:
    """A warehouse folder that does not exist yet."""
    return tmp_path / "wh"


@pytest.fixture
def lake(wh: Path) -> Lake:
    """The lake inside ``wh``."""
    return Lake(wh / "lake")


EXAMPLES_BUILT = ("pasilla", "laml", "study_es_0", "airway")
"""The examples :func:`examples_built` builds: RNA counts with and without gene ids, variants and segments, a
cBioPortal folder."""


@pytest.fixture(scope="session")
def examples_built(tmp_path_factory: pytest.TempPathFactory, example_landing: Callable[..., Path]
                   ) -> tuple[Path, Path]:
    """(landing, warehouse) of one ``omicsdw build`` of :data:`EXAMPLES_BUILT` with plots, shared by the modules
    that only read it or re-run it unchanged (one build instead of one per module: CI time).
    """
    tmp = tmp_path_factory.mktemp("examples_built")
    landing, wh = example_landing(tmp, *EXAMPLES_BUILT), tmp / "warehouse"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    return landing, wh
