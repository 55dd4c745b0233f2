"""The SQL catalog: ``warehouse.duckdb`` holds one view per table over the Parquet files readers may see.

Which files: a study's rows of every published table come from its entry in ``study_versions`` (one commit
publishes all of a study's tables together, so a view never pairs counts of one load with normalised values of
another, whatever was killed half-way); ``ingest_issues`` is read at its newest version (a failed run's problems
show at once); the gene dimension at its newest version.

The catalog is rebuilt into a temporary file and moved over the old one with an atomic rename, so an analyst's
open connection keeps reading the previous catalog and is never shown a half-written one. File paths inside the
warehouse folder are stored relative to it and resolved when a session opens the catalog (:func:`connect`), so the
folder can be moved or shared. Sessions are read-only and may read the lake only: no file writes, no reads
elsewhere, no extensions, settings locked. No DuckDB extension is needed: an object-store lake is read through an
fsspec filesystem (s3fs) registered on the session, configured from the reader's own AWS environment variables
(:mod:`warehouse.storage`), and the lake prefix is the one location the session may read.
"""

from __future__ import annotations

import fcntl
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from warehouse.storage import filesystem, is_remote, remember_lake, storage_options_from_env

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

    import polars as pl

    from warehouse.lake import Lake

CATALOG_NAME = "warehouse.duckdb"
ROOT_VARIABLE = "omicsdw_root"
"""Session variable holding the warehouse folder; relative file paths of the views are resolved against it."""


class CatalogMissing(FileNotFoundError):
    """No catalog where one was asked for."""


def _duckdb_type(dtype: Any) -> str:  # a polars DataType instance or class
    import polars as pl

    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    if isinstance(dtype, pl.List):
        return _duckdb_type(dtype.inner) + "[]"
    names = {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Int32: "INTEGER", pl.Int8: "TINYINT",
             pl.Float64: "DOUBLE", pl.Boolean: "BOOLEAN"}
    return names[dtype.base_type()]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_view_sql(table: str, files: list[str], *, root: str | None, absent: Collection[str] = ()) -> str:
    """``CREATE VIEW`` over a table's Parquet files, typed by its contract (an empty typed view if none).

    ``root``: the paths are relative to the warehouse folder, prefixed at query time by the session variable
    :data:`ROOT_VARIABLE` (set by :func:`connect`), else by ``root`` (where the catalog was built, so a plain
    ``duckdb`` session on the unmoved folder works too). ``absent``: contract columns no file has
    (:func:`absent_columns`), NULL in the view.
    """
    from schemas.tables import GLOBAL_TABLES, polars_schema

    schema = polars_schema(table)
    columns = ", ".join(f"CAST({'NULL' if c in absent else _ident(c)} AS {_duckdb_type(t)}) AS {_ident(c)}"
                        for c, t in schema.items())
    nulls = ", ".join(f"CAST(NULL AS {_duckdb_type(t)}) AS {_ident(c)}" for c, t in schema.items())
    if not files:
        return f"CREATE VIEW {_ident(table)} AS SELECT {nulls} WHERE false"
    file_list = "[" + ", ".join(_literal(f) for f in files) + "]"
    if root is not None:
        prefix = f"coalesce(getvariable('{ROOT_VARIABLE}'), {_literal(root)})"
        file_list = f"list_transform({file_list}, lambda f: {prefix} || '/' || f)"
    partitioned = "study_id" in schema and table not in GLOBAL_TABLES  # global tables keep study_id in the files
    # the long RNA tables of a new warehouse also take assay from the path (warehouse.lake.PARTITIONS); a table
    # has one layout, and DuckDB refuses a hive type for a key its paths lack
    keys = ["study_id", *(["assay"] if "/assay=" in files[0] else [])]
    types = ", ".join(f"{_literal(k)}: VARCHAR" for k in keys)
    options = f", hive_partitioning = true, hive_types = {{{types}}}" if partitioned else ""
    return (f"CREATE VIEW {_ident(table)} AS SELECT {columns} "
            f"FROM read_parquet({file_list}, union_by_name = true{options})")


_FILE_COLUMNS: dict[str, frozenset[str]] = {}
"""Data file URI -> its top-level columns, as read from its footer by :func:`absent_columns`. Delta writes a file
once under a new name and never changes it, so a process rebuilding the catalog again (a build of several
studies, the Dagster daemon) reads each footer once, not once a rebuild while a column really is absent (~15 ms a
file on an object store). A failed read is not kept."""
_FILE_COLUMNS_MAX = 200_000
"""Entries kept at most (then the cache starts again): a bound on the memory of a long-running process."""


def absent_columns(lake: Lake, table: str, files: list[str]) -> list[str]:
    """Contract columns none of ``files`` (relative to the lake root) stores: an optional column added in a later
    release, before a study is written again. Footers are read until every column is found: one file, as a rule.

    Why: the view named a column no file had, so every catalog rebuild failed with a binder error until a study
    wrote it (a first study failing, or a removal, left readers on the old catalog). A union of the files with an
    empty typed row did the same in SQL but cost ~2-3 ms more per small query (bench/README.md, Session 19); the
    Delta schema cannot tell, as commits add files without merging their columns into it.
    """
    import pyarrow as pa  # here: at module level it costs every `omicsdw sql` ~150 ms

    from schemas.tables import polars_schema

    wanted = set(polars_schema(table)) - {"study_id", "assay"}  # partition keys come from the paths
    for relative in files:
        if not wanted:
            break
        uri = f"{lake.root}/{relative}"
        try:
            if (stored := _FILE_COLUMNS.get(uri)) is None:
                stored = frozenset(lake._metadata(uri).schema.to_arrow_schema().names)  # top level
                if len(_FILE_COLUMNS) >= _FILE_COLUMNS_MAX:
                    _FILE_COLUMNS.clear()
                _FILE_COLUMNS[uri] = stored
            wanted -= stored
        except (OSError, pa.ArrowException):
            # a missing or torn file (or a failing store) cannot tell what it lacks: never call a column absent
            # then, or every contract column would be served as NULL; the view names them all and a query fails
            # loudly, as before, and doctor says what to do
            return []
    return sorted(wanted) if files else []


def view_names() -> list[str]:
    """Every view a catalog session has, sorted (a :func:`view_session` of every table has them all but
    ``study_status``, unless named).
    """
    from schemas.tables import TABLES

    return sorted({*TABLES, *(name for name, _ in _sql_views())})


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


def visible_files(lake: Lake, tables: Iterable[str] | None = None) -> dict[str, tuple[int | None, list[str]]]:
    """Table -> (its newest Delta version, the files readers see, relative to the lake root), for ``tables``
    (default: every table).

    Published tables: the files each study's ``study_versions`` entry names; other tables: the newest version.
    """
    import polars as pl

    from schemas.tables import PUBLISHED_TABLES, TABLES

    tables = list(TABLES if tables is None else tables)
    published = (lake.scan("study_versions").select("table_name", "files").collect()
                 if lake.exists("study_versions") and set(tables) & set(PUBLISHED_TABLES)
                 else pl.DataFrame(schema={"table_name": pl.String, "files": pl.List(pl.String)}))
    by_table = {t: sorted(f for files in group["files"] for f in files)
                for (t,), group in published.group_by("table_name")}
    found: dict[str, tuple[int | None, list[str]]] = {}
    for table in tables:
        if not lake.exists(table):
            found[table] = (None, [])
        elif table in PUBLISHED_TABLES:
            found[table] = (lake.version(table), [f"{table}/{f}" for f in by_table.get(table, [])])
        else:
            version, files = lake.study_files(table, None)
            found[table] = (version, [f"{table}/{f}" for f in files])
    return found


def study_visible_files(lake: Lake, study_id: str, *, ledger: pl.DataFrame | None = None,
                        tables: Iterable[str] | None = None) -> dict[str, list[str]]:
    """Table -> the files readers see of one study (relative to the lake root), for every table (or ``tables``):
    what the catalog's views read of it.

    Published tables: the files of the study's ``study_versions`` entry (``ledger``: its rows with ``table_name``
    and ``files``, when the caller read them already); ``ingest_issues`` and ``study_versions``: the study's files
    at their newest version; global tables: their newest files, as in the catalog.
    """
    import polars as pl

    from schemas.tables import GLOBAL_TABLES, PUBLISHED_TABLES, TABLES

    if ledger is None:
        ledger = (lake.scan("study_versions", study_id=study_id).select("table_name", "files").collect()
                  if lake.exists("study_versions") else pl.DataFrame(schema={"table_name": pl.String,
                                                                             "files": pl.List(pl.String)}))
    published = dict(zip(ledger["table_name"], ledger["files"].to_list(), strict=True))
    found: dict[str, list[str]] = {}
    for table in TABLES if tables is None else tables:
        if table in PUBLISHED_TABLES:
            files = sorted(published.get(table) or [])
        elif lake.exists(table):
            files = lake.study_files(table, None if table in GLOBAL_TABLES else study_id)[1]
        else:
            files = []
        found[table] = [f"{table}/{f}" for f in files]
    return found


def view_session(lake: Lake, files: dict[str, list[str]], *, views: Iterable[str] | None = None
                 ) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB session with the catalog's view of each table in ``files`` over just those files
    (relative to the lake root; :func:`table_view_sql`, so typed and read as the catalog reads them) and the joined
    views of ``warehouse/sql`` named in ``views`` (default: all but ``study_status``; they need the tables they
    read). ``study_status`` only when named: it is warehouse-wide and its table reads the whole ingest_issues log,
    which a study's session (its report) neither needs nor should pay for.

    Why: a view binds every file it lists, on creation and on each query (~50 us a footer); the catalog lists every
    study's files, so a reader of one study (its report) would pay for the whole warehouse on every query.
    """
    con = duckdb.connect(":memory:")
    try:
        if lake.is_local:
            root = str(Path(lake.root.removeprefix("file://")).resolve())
        else:
            con.register_filesystem(lake.fs)
            root = lake.root
        for table, names in files.items():
            con.execute(table_view_sql(table, [f"{root}/{f}" for f in names], root=None,
                                       absent=absent_columns(lake, table, names)))
        wanted = {name for name, _ in _sql_views()} - {STATUS_VIEW} if views is None else set(views)
        if STATUS_VIEW in wanted:
            _attempts_table(con, lake)
        for name, sql in _sql_views():
            if name in wanted:
                con.execute(sql)
    except BaseException:
        con.close()
        raise
    return con


def refresh_catalog(lake: Lake, warehouse_dir: Path) -> Path:
    """Rebuild ``warehouse.duckdb`` from what readers may see and swap it in atomically."""
    warehouse_dir.mkdir(parents=True, exist_ok=True)
    target = warehouse_dir / CATALOG_NAME
    with open(warehouse_dir / ".catalog.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in warehouse_dir.glob(f".{CATALOG_NAME}.*.tmp*"):  # left by killed builders (we hold the lock)
            stale.unlink(missing_ok=True)
        temporary = warehouse_dir / f".{CATALOG_NAME}.{os.getpid()}.tmp"
        try:
            _build(lake, temporary, warehouse_dir)
            os.replace(temporary, target)
            if not lake.is_local:  # found again if this catalog is lost (warehouse.storage.open_lake)
                remember_lake(warehouse_dir, lake.root)
        finally:
            temporary.unlink(missing_ok=True)
            Path(f"{temporary}.wal").unlink(missing_ok=True)
    return target


def _lake_prefix(lake: Lake, warehouse_dir: Path) -> tuple[str, bool]:
    """How view paths start: relative to the warehouse folder when the lake is inside it, else the lake root."""
    if lake.is_local:
        root = Path(lake.root.removeprefix("file://")).resolve()
        if root.is_relative_to(warehouse_dir.resolve()):
            return str(root.relative_to(warehouse_dir.resolve())), True
        return str(root), False
    return lake.root, False


STATUS_VIEW = "study_status"
"""The joined view over the catalog table ``ingest_attempts`` (:mod:`warehouse.status`)."""


def _attempts_table(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    """The table ``ingest_attempts``: each study's newest ingest attempt, read from the Delta log of ingest_issues
    when the catalog is built (a failed first load reached no table readers see).
    """
    from warehouse.status import ATTEMPT_COLUMNS, ingest_attempts

    columns = ", ".join(f"{_ident(name)} {_duckdb_type(dtype)}" for name, dtype, _ in ATTEMPT_COLUMNS)
    con.execute(f"CREATE TABLE ingest_attempts ({columns})")
    con.register("_attempts", ingest_attempts(lake).to_arrow())
    con.execute("INSERT INTO ingest_attempts SELECT * FROM _attempts")
    con.unregister("_attempts")
    con.execute("COMMENT ON TABLE ingest_attempts IS 'Each study''s newest ingest attempt (CLI build or Dagster run, "
                "good or failed), from the Delta log of ingest_issues; see the study_status view.'")
    for name, _, text in ATTEMPT_COLUMNS:
        con.execute(f"COMMENT ON COLUMN ingest_attempts.{_ident(name)} IS {_literal(text)}")


CATALOG_TABLE_COLUMNS = (
    ("catalog_versions", "table_name", "Warehouse table (its view of the same name)."),
    ("catalog_versions", "delta_version", "Newest Delta version of the table when the catalog was built."),
    ("catalog_versions", "files", "Parquet files the table's view reads."),
    ("catalog_info", "lake", "The lake's location: a folder relative to the warehouse folder, a path or a URI."),
    ("catalog_info", "relative", "True when lake is relative to the warehouse folder (the folder can be moved)."),
)
"""Comments of the catalog's own two tables (the views take theirs from the table contracts and SQL files)."""


def _build(lake: Lake, path: Path, warehouse_dir: Path) -> None:
    from schemas.tables import TABLE_DOCS, TABLES, column_descriptions

    prefix, relative = _lake_prefix(lake, warehouse_dir)
    con = duckdb.connect(str(path))
    try:
        if not lake.is_local:
            con.register_filesystem(lake.fs)
        con.execute("BEGIN TRANSACTION")  # one commit: hundreds of statements, each its own commit, took ~1 s
        root = str(warehouse_dir.resolve())
        versions = []
        for table, (version, files) in visible_files(lake).items():
            con.execute(table_view_sql(table, [f"{prefix}/{f}" for f in files], root=root if relative else None,
                                       absent=absent_columns(lake, table, files)))
            con.execute(f"COMMENT ON VIEW {_ident(table)} IS {_literal(TABLE_DOCS[table])}")
            for column, text in column_descriptions(table).items():
                con.execute(f"COMMENT ON COLUMN {_ident(table)}.{_ident(column)} IS {_literal(text)}")
            versions.append((table, version, len(files)))
        _attempts_table(con, lake)
        described: dict[str, str] = {}
        for table in TABLES:  # a joined view's column takes the first table's description of that name
            for column, text in column_descriptions(table).items():
                described.setdefault(column, text)
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
        con.execute("COMMENT ON TABLE catalog_versions IS 'Newest Delta version of each table and the number of "
                    "files its view reads (published study versions, see study_versions).'")
        con.execute("CREATE TABLE catalog_info (lake VARCHAR, relative BOOLEAN)")
        con.execute("INSERT INTO catalog_info VALUES (?, ?)", [prefix, relative])
        con.execute("COMMENT ON TABLE catalog_info IS 'Where the lake is: relative to the warehouse folder or not.'")
        for table, column, text in CATALOG_TABLE_COLUMNS:  # every column of the catalog has its comment
            con.execute(f"COMMENT ON COLUMN {table}.{column} IS {_literal(text)}")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()


def connect(path: str | Path = "warehouse") -> duckdb.DuckDBPyConnection:
    """Read-only session on a warehouse's catalog (``path``: the warehouse folder or its .duckdb file).

    Each call opens the catalog file anew (attached to a private in-memory database), so a new connection always
    sees the newest catalog, even while this process holds older ones. The session may read the lake only.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CATALOG_NAME
    if not path.is_file():
        raise CatalogMissing(f"no catalog at {path}: build the warehouse first (make run, or omicsdw build "
                             "--landing DIR --warehouse DIR)")
    folder = path.resolve().parent
    con = duckdb.connect(":memory:")
    con.execute(f"ATTACH {_literal(str(path.resolve()))} AS warehouse (READ_ONLY)")
    con.execute("USE warehouse")
    lake, relative = con.execute("SELECT lake, relative FROM catalog_info").fetchone() or ("lake", True)
    readable = str(folder / lake) if relative else lake
    if is_remote(readable):
        con.register_filesystem(filesystem(storage_options_from_env()))
    con.execute(f"SET VARIABLE {ROOT_VARIABLE} = ?", [str(folder)])
    con.execute("SET allowed_directories = ?", [[readable.rstrip("/") + "/"]])
    con.execute("SET enable_external_access = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")
    return con
