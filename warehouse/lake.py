"""The one table writer: each study of each table is replaced by one atomic Delta commit.

Data are streamed by polars into Parquet files under ``<lake>/<table>/study_id=<id>/`` (bounded memory, no
collect of a whole study), then committed in one transaction that removes the study's previous files
(``mode="overwrite"`` with a partition filter) and adds the new ones with their statistics. Until that commit the
new files are invisible to every reader, so a failed run leaves the last good version readable. A commit records
the study's input fingerprint in its metadata; a re-run with the same fingerprint writes nothing.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, RemoveAction

from schemas.tables import STUDY_TABLES, polars_schema

FINGERPRINT_KEY = "omicsdw.fingerprint"
STUDY_KEY = "omicsdw.study"
_COMMIT_RETRIES = 5


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one study's commit to one table."""

    table: str
    study_id: str | None
    version: int
    rows: int
    files: int
    skipped: bool


def arrow_schema(table: str, *, without: Iterable[str] = ()) -> pa.Schema:
    """Arrow schema of a table contract (partition columns can be left out: they live in the path)."""
    schema = polars_schema(table)
    drop = set(without)
    return pl.DataFrame(schema={k: v for k, v in schema.items() if k not in drop}).to_arrow().schema


class Lake:
    """Delta tables under one root (a local path or an object-store URI with ``storage_options``)."""

    def __init__(self, root: str | Path, *, storage_options: dict[str, str] | None = None):
        self.root = str(root).rstrip("/")
        self.storage_options = storage_options
        self.is_local = "://" not in self.root or self.root.startswith("file://")

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    # -- reading ------------------------------------------------------------------------------------------
    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(table), storage_options=self.storage_options)

    def delta(self, table: str, version: int | None = None) -> DeltaTable:
        return DeltaTable(self.uri(table), version=version, storage_options=self.storage_options)

    def version(self, table: str) -> int | None:
        return self.delta(table).version() if self.exists(table) else None

    def scan(self, table: str, *, version: int | None = None, study_id: str | None = None) -> pl.LazyFrame:
        """LazyFrame over a table (optionally at a Delta version, for time travel), columns in contract order."""
        frame = pl.scan_delta(self.uri(table), version=version, storage_options=self.storage_options)
        if study_id is not None:
            frame = frame.filter(pl.col("study_id") == study_id)
        return frame.select(list(polars_schema(table)))

    def files(self, table: str) -> list[str]:
        """Parquet file URIs of the current version (what the SQL catalog's views read)."""
        return self.delta(table).file_uris()

    # -- writing ------------------------------------------------------------------------------------------
    def ensure_tables(self, tables: Iterable[str]) -> None:
        """Create missing tables empty, so parallel study runs never race to create the same table."""
        for table in tables:
            if self.exists(table):
                continue
            partition = ["study_id"] if table in STUDY_TABLES else None
            empty = pl.DataFrame(schema=polars_schema(table)).to_arrow()
            try:
                write_deltalake(self.uri(table), empty, partition_by=partition, mode="ignore",
                                storage_options=self.storage_options,
                                commit_properties=CommitProperties(custom_metadata={"omicsdw.operation": "create"}))
            except CommitFailedError:
                if not self.exists(table):  # another run created it between our check and our commit: fine
                    raise

    def last_fingerprint(self, table: str, study_id: str | None) -> str | None:
        """Fingerprint recorded by the newest commit that replaced this study (or the whole global table)."""
        if not self.exists(table):
            return None
        for commit in self.delta(table).history():
            if commit.get(STUDY_KEY) == (study_id or "*"):
                return commit.get(FINGERPRINT_KEY)
        return None

    def stage(self, table: str, data: pl.LazyFrame | pl.DataFrame, *, study_id: str | None) -> StagedFiles:
        """Stream ``data`` into new Parquet files of the table (invisible to readers until committed)."""
        staged = self.stage_many({table: data}, study_id=study_id)
        return staged[table]

    def stage_many(self, frames: dict[str, pl.LazyFrame | pl.DataFrame], *, study_id: str | None
                   ) -> dict[str, StagedFiles]:
        """Stage several tables in one polars query plan, so a shared scan of the input file runs once."""
        planned = {table: self.plan(table, data, study_id=study_id) for table, data in frames.items()}
        pl.collect_all([sink for _, sink in planned.values()])
        return {table: staged for table, (staged, _) in planned.items()}

    def plan(self, table: str, data: pl.LazyFrame | pl.DataFrame, *, study_id: str | None
             ) -> tuple[StagedFiles, pl.LazyFrame]:
        """A lazy sink of ``data`` into one new Parquet file of the table; run it with ``pl.collect_all``."""
        types = polars_schema(table)
        columns = [c for c in types if not (study_id is not None and c == "study_id")]
        name = f"part-{uuid.uuid4().hex}.zstd.parquet"
        relative = f"study_id={study_id}/{name}" if study_id is not None else name
        target = f"{self.uri(table)}/{relative}"
        if self.is_local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        lazy = data.lazy().select([pl.col(c).cast(types[c], strict=True) for c in columns])
        sink = lazy.sink_parquet(target, lazy=True, storage_options=self.storage_options,
                                 row_group_size=1_000_000)
        return StagedFiles(table, study_id, [relative], self), sink

    def stage_frames(self, table: str, frames: Iterable[pl.DataFrame], *, study_id: str | None) -> StagedFiles:
        """Write each frame as its own Parquet file of one staged set (a result too big for memory, block by block).

        Commit the set once with :meth:`commit`; no frame at all stages nothing, which commits an empty study.
        """
        relative: list[str] = []
        try:
            for frame in frames:
                staged, sink = self.plan(table, frame, study_id=study_id)
                relative += staged.relative_paths
                sink.collect()
        except BaseException:
            self.discard(StagedFiles(table, study_id, relative, self))
            raise
        return StagedFiles(table, study_id, relative, self)

    def _metadata(self, uri: str) -> pq.FileMetaData:
        return pq.read_metadata(uri) if self.is_local else _remote_metadata(uri, self.storage_options)

    def staged_rows(self, staged: StagedFiles) -> int:
        """Rows in staged files, from their Parquet footers."""
        return sum(self._metadata(f"{self.uri(staged.table)}/{relative}").num_rows
                   for relative in staged.relative_paths)

    def scan_staged(self, staged: StagedFiles) -> pl.LazyFrame:
        """Read staged (uncommitted) files as the table's rows, for validation before the commit."""
        paths = [f"{self.uri(staged.table)}/{relative}" for relative in staged.relative_paths]
        frame = pl.scan_parquet(paths, storage_options=self.storage_options, hive_partitioning=False)
        if staged.study_id is not None:
            frame = frame.with_columns(pl.lit(staged.study_id).alias("study_id"))
        return frame.select(list(polars_schema(staged.table)))

    def commit(self, staged: StagedFiles, *, fingerprint: str) -> WriteResult:
        """Replace the study's rows (or the whole global table) by the staged files in one Delta commit."""
        added = [a for relative in staged.relative_paths if (a := self._add_action(staged, relative)) is not None]
        actions: list[AddAction | RemoveAction] = list(added)  # the transaction's type; only adds here
        rows = sum(json.loads(a.stats)["numRecords"] for a in added)
        props = CommitProperties(custom_metadata={FINGERPRINT_KEY: fingerprint,
                                                  STUDY_KEY: staged.study_id or "*"})
        filters = [("study_id", "=", staged.study_id)] if staged.study_id is not None else None
        schema = arrow_schema(staged.table)
        for attempt in range(_COMMIT_RETRIES):
            try:
                table = self.delta(staged.table)
                table.create_write_transaction(actions, mode="overwrite", schema=schema,
                                               partition_filters=filters, commit_properties=props)
                break
            except CommitFailedError:
                if attempt == _COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        return WriteResult(staged.table, staged.study_id, self.delta(staged.table).version(), rows,
                           len(actions), skipped=False)

    def write(self, table: str, data: pl.LazyFrame | pl.DataFrame, *, study_id: str | None,
              fingerprint: str) -> WriteResult:
        """Stage and commit one table for one study; unchanged fingerprint -> no new version."""
        if self.last_fingerprint(table, study_id) == fingerprint:
            return self.unchanged(table, study_id)
        return self.commit(self.stage(table, data, study_id=study_id), fingerprint=fingerprint)

    def unchanged(self, table: str, study_id: str | None) -> WriteResult:
        """The result reported when a study's input did not change since its last commit."""
        frame = self.scan(table) if study_id is None else self.scan(table, study_id=study_id)
        rows = frame.select(pl.len()).collect().item()
        return WriteResult(table, study_id, self.delta(table).version(), rows, 0, skipped=True)

    def discard(self, staged: StagedFiles) -> None:
        """Remove staged files of a run that will not be committed (local lakes; remote ones are vacuumed)."""
        if not self.is_local:
            return
        for relative in staged.relative_paths:
            Path(self.uri(staged.table), relative).unlink(missing_ok=True)

    def _add_action(self, staged: StagedFiles, relative: str) -> AddAction | None:
        uri = f"{self.uri(staged.table)}/{relative}"
        metadata = self._metadata(uri)
        if metadata.num_rows == 0:
            self.discard(StagedFiles(staged.table, staged.study_id, [relative], self))
            return None
        size = Path(uri).stat().st_size if self.is_local else metadata.serialized_size
        partition = {"study_id": staged.study_id} if staged.study_id is not None else {}
        return AddAction(relative, size, partition, int(time.time() * 1000), True,
                         json.dumps(_file_stats(metadata)))


@dataclass(frozen=True)
class StagedFiles:
    """Parquet files written for one table and study, not yet committed."""

    table: str
    study_id: str | None
    relative_paths: list[str]
    lake: Lake


def _file_stats(metadata: pq.FileMetaData) -> dict[str, object]:
    """Delta file statistics (numRecords, min/max, null counts) from the Parquet footer, for file skipping."""
    mins: dict[str, int | float | str | bool] = {}
    maxs: dict[str, int | float | str | bool] = {}
    nulls: dict[str, int] = {}
    for rg in range(metadata.num_row_groups):
        group = metadata.row_group(rg)
        for c in range(group.num_columns):
            column = group.column(c)
            name = column.path_in_schema
            stats = column.statistics
            if stats is None:
                continue
            nulls[name] = nulls.get(name, 0) + (stats.null_count or 0)
            if not stats.has_min_max:
                continue
            lo, hi = stats.min, stats.max
            if not isinstance(lo, (int, float, str, bool)):
                continue
            mins[name] = lo if name not in mins else min(mins[name], lo)
            maxs[name] = hi if name not in maxs else max(maxs[name], hi)
    return {"numRecords": metadata.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


def _remote_metadata(uri: str, storage_options: dict[str, str] | None) -> pq.FileMetaData:
    import pyarrow.fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(uri)
    with filesystem.open_input_file(path) as fh:
        return pq.ParquetFile(fh).metadata
