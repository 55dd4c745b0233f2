"""Where a warehouse's lake lives and how to reach it: a local folder, or an S3-compatible object store.

An object-store lake (``s3://bucket/prefix``) is configured by the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``, ``AWS_ALLOW_HTTP``), read
here once and handed to every client as the same options: delta-rs and polars (``storage_options``) write and read
the tables; s3fs (the ``s3`` extra) does the rest (Parquet footers, sizes, deleting staged files) and lets DuckDB
read the catalog's files without its httpfs extension, which would be downloaded at run time. Credentials are
never stored in the catalog: every reader brings its own from its environment.

The warehouse folder stays local whatever the lake: it holds the catalog, and for an object-store lake also the
study locks and staging journals (``<warehouse>/_omicsdw``), so writers of one lake must share that folder.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from warehouse.lake import Lake

AWS_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_REGION", "AWS_ALLOW_HTTP")
"""Environment variables passed on as storage options (delta-rs and polars read the same names)."""
SERVICE_DIR = "_omicsdw"
"""Folder holding locks and staging journals (never a table): in a local lake, else in the warehouse folder."""


def is_remote(root: str | Path) -> bool:
    """True for an object-store URI (``s3://...``); local paths and ``file://`` URIs are not."""
    text = str(root)
    return "://" in text and not text.startswith("file://")


def storage_options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The AWS variables that are set, as delta-rs / polars storage options (unset ones: the default chain)."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in AWS_VARIABLES if env.get(name)}


def filesystem(storage_options: Mapping[str, str]) -> Any:
    """An s3fs filesystem configured like delta-rs (same endpoint, keys, region); no listing cache, so files
    written by other clients are seen at once.
    """
    try:
        import s3fs
    except ImportError as exc:  # the core install has no s3fs: say which extra brings it
        raise ImportError("an object-store lake needs s3fs: install omicsdw with the 's3' extra "
                          "(pip install 'omicsdw[s3]')") from exc
    client = {"region_name": storage_options["AWS_REGION"]} if storage_options.get("AWS_REGION") else {}
    return s3fs.S3FileSystem(key=storage_options.get("AWS_ACCESS_KEY_ID"),
                             secret=storage_options.get("AWS_SECRET_ACCESS_KEY"),
                             token=storage_options.get("AWS_SESSION_TOKEN"),
                             endpoint_url=storage_options.get("AWS_ENDPOINT_URL"), client_kwargs=client,
                             use_listings_cache=False, skip_instance_cache=True)


def recorded_lake(warehouse_dir: Path) -> str | None:
    """The lake the warehouse's catalog was built from (None: no catalog, or a lake inside the folder)."""
    from warehouse.catalog import CATALOG_NAME

    path = (warehouse_dir / CATALOG_NAME).resolve()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    if not path.is_file():
        return None
    import duckdb

    try:
        return _catalog_lake(str(path), stat.st_ino, stat.st_mtime_ns, stat.st_size)
    except duckdb.Error:  # a damaged catalog: the default lake; `omicsdw doctor` names the damage
        return None


@functools.lru_cache(maxsize=64)
def _catalog_lake(path: str, inode: int, mtime_ns: int, size: int) -> str | None:
    """:func:`recorded_lake` of one catalog file version (a build opens the lake ~15 times per study; attaching
    the catalog costs ~10 ms each; a rebuilt catalog is a new file, so its key changes).
    """
    import duckdb

    con = duckdb.connect(":memory:")  # attached read-only, as sessions do, so open sessions never conflict
    try:
        con.execute("ATTACH ? AS catalog (READ_ONLY)", [path])
        row = con.execute("SELECT lake, relative FROM catalog.catalog_info").fetchone()
    finally:
        con.close()
    return None if row is None or row[1] else str(row[0])


class LakeUnreachable(OSError):
    """An object-store lake that does not answer (endpoint, credentials, bucket): said in one sentence."""


def _first_causes(exc: BaseException, depth: int = 2) -> str:
    """The first lines of delta-rs's error chain, without its terminal colours and arrows."""
    lines = [re.sub(r"\x1b\[[0-9;]*m|\u21b3", "", line).strip() for line in str(exc).splitlines()]
    return ": ".join([line for line in lines if line][:depth]) or type(exc).__name__


def check_reachable(lake: Lake) -> None:
    """Raise :class:`LakeUnreachable` unless an object-store lake answers (a local lake always passes).

    Why: every verb's first Delta call on an unreachable store failed with delta-rs's bare ``OSError``
    ("Operation not supported") and a traceback, naming neither the lake nor the settings behind it.
    """
    if lake.is_local:
        return
    from deltalake import DeltaTable

    try:
        DeltaTable.is_deltatable(lake.uri("studies"), storage_options=lake.storage_options)
    except OSError as exc:
        raise LakeUnreachable(f"cannot reach the lake {lake.root} ({_first_causes(exc)}); check AWS_ENDPOINT_URL, "
                              f"the bucket and the credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY") from exc


def open_lake(warehouse_dir: str | Path, lake_uri: str | None = None) -> Lake:
    """The lake of a warehouse folder: ``lake_uri``, else ``$OMICSDW_LAKE``, else the lake its catalog was built
    from, else ``<warehouse>/lake``. An object-store lake keeps its locks and journals in the warehouse folder.
    """
    from warehouse.lake import Lake

    folder = Path(warehouse_dir)
    root = (lake_uri or os.environ.get("OMICSDW_LAKE") or recorded_lake(folder) or _remembered_lake(folder)
            or (folder / "lake").resolve())
    if is_remote(root):
        return Lake(root, service_dir=folder.resolve() / SERVICE_DIR)
    return Lake(root)


LAKE_NOTE = "lake"
"""``<warehouse>/_omicsdw/lake``: the object-store lake's URI, beside its locks (never credentials)."""


def remember_lake(folder: Path, root: str) -> None:
    """Note an object-store lake's URI in the warehouse folder (best effort: a read-only folder is read as is).
    Called where the catalog is written (:func:`warehouse.catalog.refresh_catalog`), so the note names the lake
    the catalog shows.

    Why: the catalog was the only record of it, so a lost ``warehouse.duckdb`` (deleted, a crash, a restore of part
    of the folder) left every verb on ``<warehouse>/lake``: doctor said 'build the warehouse first', and a build
    without ``--lake`` started a new local lake beside the one in the store. Written on every open of the lake
    instead, a mistyped ``--warehouse`` created folders, read-only verbs wrote, and a one-off ``--lake`` replaced
    the note of the catalog's lake.
    """
    note = folder / SERVICE_DIR / LAKE_NOTE
    try:
        if note.read_text().strip() == root:
            return
    except OSError:
        pass
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text(root + "\n")
    except OSError:
        return


def _remembered_lake(folder: Path) -> str | None:
    """The object-store lake noted by :func:`remember_lake`, when the folder has no catalog to say which lake it
    shows and no local lake of its own (a catalog, or a ``lake/`` folder, always wins).
    """
    from warehouse.catalog import CATALOG_NAME

    if (folder / CATALOG_NAME).exists() or (folder / "lake").exists():
        return None
    try:
        text = (folder / SERVICE_DIR / LAKE_NOTE).read_text().strip()
    except OSError:
        return None
    return text if is_remote(text) else None
