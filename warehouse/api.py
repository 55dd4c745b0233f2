"""The Python API: the same tables as the SQL catalog, as polars LazyFrames with Delta time travel."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import polars as pl

from schemas.tables import TABLES
from warehouse.catalog import connect as _connect_catalog
from warehouse.lake import Lake


def _warehouse_dir(path: str | Path | None) -> Path:
    return Path(path or os.environ.get("OMICSDW_WAREHOUSE", "warehouse"))


def connect(path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """Read-only DuckDB connection to ``<warehouse>/warehouse.duckdb`` (default ``$OMICSDW_WAREHOUSE`` or
    ``./warehouse``); it never blocks a running build and never sees a half-written table.
    """
    return _connect_catalog(_warehouse_dir(path))


def table(name: str, version: int | None = None, *, warehouse: str | Path | None = None,
          lake_uri: str | None = None) -> pl.LazyFrame:
    """A warehouse table as a LazyFrame; ``version`` reads an earlier Delta version (reproducible snapshots)."""
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    lake = Lake(lake_uri or os.environ.get("OMICSDW_LAKE") or (_warehouse_dir(warehouse) / "lake").resolve())
    return lake.scan(name, version=version)
