"""The Python API: the same tables as the SQL catalog, as polars LazyFrames, with Delta time travel.

Imports are inside the functions: ``import warehouse`` stays light (no pandera, no Dagster).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
    import polars as pl


def _warehouse_dir(path: str | Path | None) -> Path:
    return Path(path or os.environ.get("OMICSDW_WAREHOUSE", "warehouse_data"))


def connect(path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """Read-only DuckDB session on ``<warehouse>/warehouse.duckdb`` (default ``$OMICSDW_WAREHOUSE`` or
    ``./warehouse_data``): it never blocks a running build, never sees a half-written study, and each call sees
    the newest catalog. It may read the lake only (no file writes, no reads elsewhere).
    """
    from warehouse.catalog import connect as _connect

    return _connect(_warehouse_dir(path))


def _catalog_versions(folder: Path) -> dict[str, int]:
    """Table -> the Delta version the catalog was built from (empty without a catalog)."""
    from warehouse.catalog import CatalogMissing
    from warehouse.catalog import connect as _connect

    try:
        con = _connect(folder)
    except CatalogMissing:
        return {}
    try:
        rows = con.execute("SELECT table_name, delta_version FROM catalog_versions").fetchall()
    finally:
        con.close()
    return {t: v for t, v in rows if v is not None}


def table(name: str, version: int | None = None, *, warehouse: str | Path | None = None,
          lake_uri: str | None = None) -> pl.LazyFrame:
    """A warehouse table as a LazyFrame: exactly what the SQL catalog shows (each study at its published version
    set, as of the catalog's last rebuild), or with ``version`` the whole table at that Delta version.
    """
    import polars as pl

    from schemas.tables import PUBLISHED_TABLES, TABLES, polars_schema

    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    folder = _warehouse_dir(warehouse)
    lake = _lake(warehouse, lake_uri)
    if not lake.exists(name):
        return pl.LazyFrame(schema=polars_schema(name))
    if version is not None:
        newest = lake.version(name)
        if not 0 <= version <= (newest or 0):
            raise ValueError(f"table {name!r} has versions 0 to {newest}; version {version} does not exist")
        if lake.is_local:  # polars said only 'No such file or directory' with a cut path, on collect
            paths = lake.add_actions(name, version)["path"].to_list()
            gone = [f for f in paths if not lake.file_exists(f"{name}/{f}")]
            if gone:
                from warehouse.maintenance import DEFAULT_RETENTION_HOURS

                raise FileNotFoundError(
                    f"version {version} of {name!r} cannot be read: {len(gone)} of its {len(paths)} files are "
                    f"gone, e.g. {gone[0]} (omicsdw vacuum deletes the files of a version no published study set "
                    "or stored feature set reads, other than the newest, once they are older than its retention "
                    f"window, --retention-hours, {DEFAULT_RETENTION_HOURS} by default; files deleted or lost "
                    "otherwise read the same; omicsdw doctor checks the versions vacuum keeps)")
        return lake.scan(name, version=version)
    # the API and SQL agree even if a run died before rebuilding the catalog; a lake given alone has no known catalog
    shown = _catalog_versions(folder) if warehouse is not None or lake_uri is None else {}
    if name not in PUBLISHED_TABLES:
        return lake.scan(name, version=shown.get(name))
    if not lake.exists("study_versions"):
        return pl.LazyFrame(schema=polars_schema(name))
    ledger = lake.scan("study_versions", version=shown.get("study_versions"))
    published = ledger.filter(pl.col("table_name") == name).select("files").collect()
    files = published["files"].explode().drop_nulls().to_list()
    if not files:
        return pl.LazyFrame(schema=polars_schema(name))
    return lake.scan_files(name, files, typed=True)  # the contract's columns and types; one scan per study


def _lake(warehouse: str | Path | None, lake_uri: str | None):  # type: ignore[no-untyped-def]
    """The warehouse's lake; a local lake that does not exist is an error, not an empty warehouse: a mistyped
    ``warehouse=`` read every table as 0 rows (``connect`` and ``omicsdw sql`` already refuse it).
    """
    from warehouse.catalog import CatalogMissing
    from warehouse.storage import open_lake

    folder = _warehouse_dir(warehouse)
    lake = open_lake(folder, lake_uri)
    if lake.is_local and not Path(lake.root.removeprefix("file://")).is_dir():
        raise CatalogMissing(f"no lake at {lake.root} (warehouse {folder}): build the warehouse first (make run, "
                             "or omicsdw build --landing DIR --warehouse DIR), or give warehouse= / "
                             "$OMICSDW_WAREHOUSE")
    return lake


def features(name: str, version: int | None = None, *, warehouse: str | Path | None = None,
             lake_uri: str | None = None) -> pl.DataFrame:
    """A feature set as a wide polars DataFrame: one row per (study_id, sample_id), one column per
    ``<layer>__<symbol>``; ``version`` gives exactly that version (default the newest), whatever landed since.
    ``.to_pandas()`` / ``.to_numpy()`` export it; :func:`feature_batches` streams it by row batches.
    """
    from warehouse.feature_sets import read_feature_set

    return read_feature_set(_lake(warehouse, lake_uri), name, version)


def feature_batches(name: str, version: int | None = None, *, batch_rows: int = 1000,
                    warehouse: str | Path | None = None, lake_uri: str | None = None) -> Iterator[pl.DataFrame]:
    """The same frame as :func:`features`, ``batch_rows`` samples at a time (each batch read on its own)."""
    from warehouse.feature_sets import iter_feature_batches

    yield from iter_feature_batches(_lake(warehouse, lake_uri), name, version, batch_rows=batch_rows)


def feature_versions(name: str, *, warehouse: str | Path | None = None, lake_uri: str | None = None
                     ) -> pl.DataFrame:
    """One row per version of a feature set: version, created_at, rows, columns, content_hash, manifest (JSON)."""
    from warehouse.feature_sets import version_table

    return version_table(_lake(warehouse, lake_uri), name)


def delta_snapshots(name: str, *, warehouse: str | Path | None = None, lake_uri: str | None = None
                    ) -> dict[int, list[str] | None]:
    """What the catalog shows of a table, as Delta reads any engine can make: version -> the study ids to keep from
    that version (``None``: every row; the gene dimension, ``ingest_issues``, the global tables).

    A study's rows are visible at the version it was published at (``study_versions``), so reading a table's
    newest version can show a run's unpublished commits. A published study whose files are unchanged at the
    catalog's version of the table is read from that version: a warehouse at rest is one read per table; a study
    being rebuilt, or whose run failed, is read at its published version. With Daft::

        parts = [daft.read_deltalake(uri, version=v).where(daft.col("study_id").is_in(ids))
                 for v, ids in warehouse.delta_snapshots("rna_counts").items()]
    """
    import polars as pl

    from schemas.tables import PUBLISHED_TABLES, TABLES

    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    folder = _warehouse_dir(warehouse)
    lake = _lake(warehouse, lake_uri)
    if not lake.exists(name):
        return {}
    shown = _catalog_versions(folder) if warehouse is not None or lake_uri is None else {}
    version = shown.get(name, lake.version(name))
    assert version is not None
    if name not in PUBLISHED_TABLES:
        return {version: None}
    if not lake.exists("study_versions"):
        return {}
    ledger = (lake.scan("study_versions", version=shown.get("study_versions"))
              .filter(pl.col("table_name") == name).select("study_id", "delta_version", "files").collect())
    actions = lake.add_actions(name, version)
    current = ({} if actions.is_empty() else
               {study: sorted(group["path"]) for (study,), group in actions.group_by("partition.study_id")})
    reads: dict[int, list[str]] = {}
    for study, published, files in ledger.iter_rows():
        if files:  # a study with no files of this table shows no rows
            at = version if current.get(study) == sorted(files) else published
            reads.setdefault(at, []).append(study)
    snapshots: dict[int, list[str] | None] = {v: sorted(ids) for v, ids in sorted(reads.items())}
    return snapshots
