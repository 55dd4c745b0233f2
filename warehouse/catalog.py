"""The SQL catalog: ``warehouse.duckdb`` holds one view per Delta table over its current files.

The catalog is rebuilt into a temporary file and moved over the old one with an atomic rename, so an analyst's
open read-only connection keeps reading the previous catalog (its file stays alive until closed) and is never
locked out or shown a half-written table. Views read the Parquet files of each table's current Delta version
(no DuckDB extension is needed, none may be installed at run time); deletion vectors are never enabled by the
writer, so the file list is the table. Every view and column carries the comment from ``schemas.tables``.
"""

from __future__ import annotations

import fcntl
import os
from importlib import resources
from pathlib import Path

import duckdb
import polars as pl

from schemas.tables import TABLE_DOCS, TABLES, column_descriptions, polars_schema
from warehouse.lake import Lake

CATALOG_NAME = "warehouse.duckdb"

_DUCKDB_TYPES = {
    pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Int32: "INTEGER", pl.Int8: "TINYINT", pl.Float64: "DOUBLE",
    pl.Boolean: "BOOLEAN",
}


def _duckdb_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    return _DUCKDB_TYPES[dtype.base_type()]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_view_sql(table: str, files: list[str]) -> str:
    """``CREATE VIEW`` over a table's current Parquet files, typed by its contract (an empty typed view if none)."""
    schema = polars_schema(table)
    columns = ", ".join(f"CAST({_ident(c)} AS {_duckdb_type(t)}) AS {_ident(c)}" for c, t in schema.items())
    if not files:
        nulls = ", ".join(f"CAST(NULL AS {_duckdb_type(t)}) AS {_ident(c)}" for c, t in schema.items())
        return f"CREATE VIEW {_ident(table)} AS SELECT {nulls} WHERE false"
    file_list = "[" + ", ".join(_literal(f) for f in files) + "]"
    options = ", hive_partitioning = true, hive_types = {'study_id': VARCHAR}" if "study_id" in schema else ""
    return (f"CREATE VIEW {_ident(table)} AS SELECT {columns} "
            f"FROM read_parquet({file_list}, union_by_name = true{options})")


def _sql_views() -> list[tuple[str, str]]:
    """The joined views users see, one ``.sql`` file each, in dependency-free alphabetical order."""
    folder = resources.files("warehouse") / "sql"
    return sorted((entry.name.removesuffix(".sql"), entry.read_text()) for entry in folder.iterdir()
                  if entry.name.endswith(".sql"))


def _view_comments(sql: str) -> tuple[str, dict[str, str]]:
    """The view's description (its leading ``--`` lines) and column descriptions (``-- @column text`` lines)."""
    text, columns = [], {}
    for line in sql.splitlines():
        if not line.startswith("--"):
            continue
        body = line.removeprefix("--").strip()
        if body.startswith("@"):
            name, _, description = body[1:].partition(" ")
            columns[name] = description.strip()
        else:
            text.append(body)
    return " ".join(text), columns


def refresh_catalog(lake: Lake, warehouse_dir: Path) -> Path:
    """Rebuild ``warehouse.duckdb`` from the lake's current table versions and swap it in atomically."""
    warehouse_dir.mkdir(parents=True, exist_ok=True)
    target = warehouse_dir / CATALOG_NAME
    with open(warehouse_dir / ".catalog.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        temporary = warehouse_dir / f".{CATALOG_NAME}.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)
        try:
            _build(lake, temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
    return target


def _build(lake: Lake, path: Path) -> None:
    con = duckdb.connect(str(path))
    try:
        versions = []
        for table in TABLES:
            files = lake.files(table) if lake.exists(table) else []
            con.execute(table_view_sql(table, files))
            con.execute(f"COMMENT ON VIEW {_ident(table)} IS {_literal(TABLE_DOCS[table])}")
            for column, text in column_descriptions(table).items():
                con.execute(f"COMMENT ON COLUMN {_ident(table)}.{_ident(column)} IS {_literal(text)}")
            versions.append((table, lake.version(table), len(files)))
        described = {c: d for t in TABLES for c, d in column_descriptions(t).items()}
        for name, sql in _sql_views():
            con.execute(sql)
            text, own = _view_comments(sql)
            con.execute(f"COMMENT ON VIEW {_ident(name)} IS {_literal(text)}")
            for (column,) in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = ?",
                                         [name]).fetchall():
                description = own.get(column) or described.get(column)
                if description:
                    con.execute(f"COMMENT ON COLUMN {_ident(name)}.{_ident(column)} IS {_literal(description)}")
        con.execute("CREATE TABLE catalog_versions (table_name VARCHAR, delta_version BIGINT, files BIGINT)")
        con.executemany("INSERT INTO catalog_versions VALUES (?, ?, ?)", versions)
        con.execute("COMMENT ON TABLE catalog_versions IS 'Delta version of each table the views read.'")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def connect(path: str | Path = "warehouse") -> duckdb.DuckDBPyConnection:
    """Read-only connection to a warehouse's catalog (``path``: the warehouse folder or the .duckdb file)."""
    path = Path(path)
    if path.is_dir():
        path = path / CATALOG_NAME
    if not path.exists():
        raise FileNotFoundError(f"no catalog at {path}: build the warehouse first (make run / omicsdw build)")
    return duckdb.connect(str(path), read_only=True)
