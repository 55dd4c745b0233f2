"""Delta tables under one root: staging, the atomic per-study commit, history look-ups, locks and clean-up.

Data are streamed by polars into Parquet files under ``<lake>/<table>/study_id=<id>/`` (bounded memory, no
collect of a whole study; the long RNA tables one folder deeper, ``study_id=<id>/assay=<name>/``: see
:data:`PARTITIONS`), then committed in one transaction that removes the study's previous files
(``mode="overwrite"`` with a partition filter) and adds the new ones with their statistics. Until that commit the
new files are invisible to every reader, so a failed run leaves the last good version readable. A commit records
the study's input fingerprint in its metadata; a re-run with the same fingerprint writes nothing.

Only :mod:`warehouse.commit` calls :meth:`Lake.commit` (after the contract checks): it is the one commit path.

A writer of a study holds :meth:`Lake.study_session`: a per-study lock (two builds of one study never run at
once; the second waits, then finds its work done) and a staging journal, so the staged files of a run killed
before its commit are deleted by the next session of that study. Locks and journals are local files: in
``<lake>/_omicsdw`` for a local lake, in the warehouse folder for an object-store lake (``service_dir``, see
:mod:`warehouse.storage`); an object-store lake opened without one writes without lock or journal (Dagster's
per-study concurrency pool and ``vacuum`` then stand in).
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.transaction import AddAction, RemoveAction

from schemas.tables import APPEND_TABLES, GLOBAL_TABLES, polars_schema
from warehouse.storage import SERVICE_DIR, filesystem, is_remote, storage_options_from_env

FINGERPRINT_KEY = "omicsdw.fingerprint"
STUDY_KEY = "omicsdw.study"
INPUTS_KEY = "omicsdw.inputs"
"""Commit metadata of a derived table: the fingerprint of the ingested load it was computed from."""
GLOBAL = "*"
"""The study key of commits to global (unpartitioned) tables."""
LOCK_TIMEOUT_S = float(os.environ.get("OMICSDW_LOCK_TIMEOUT", "1800"))
BUILD_LOCK_TIMEOUT_S = float(os.environ.get("OMICSDW_BUILD_LOCK_TIMEOUT", "21600"))
"""How long a CLI build waits for another build of the same study (a whole study build, not a step: 6 h)."""
_COMMIT_RETRIES = 5
_HISTORY: dict[tuple[str, str], tuple[int, list[dict[str, Any]]]] = {}
"""Commit infos read so far, newest first, by (table URI, Delta table id): see :meth:`Lake.history`."""
_OPEN = threading.local()
"""This thread's open tables of local lakes (see :meth:`Lake.delta`): ``tables``, URI -> (DeltaTable, stamp of the
commit file of its version), least recently used first; ``pid``, the process that opened them."""
_OPEN_MAX = 256
CHECKPOINT_EVERY = 10
"""Versions between two Delta checkpoints written after our commits (delta-rs writes one every 100 by default).

Opening a table reads its newest checkpoint and replays the commit files after it, ~0.4 ms CPU each, and so does
each commit; a build opens every table tens of times a study, so with the default a warehouse of N studies paid
O(N) per open until version 100, the main part of a study's cost growing with the warehouse (bench/README.md,
"Per-study cost against warehouse size"). A checkpoint costs ~10 ms (it lists the table's live files once).
"""


PARQUET_CODECS: dict[str, dict[str, Any]] = {
    "rna_normalized": {"compression": "lz4"},
    "rna_vst": {"compression": "lz4"},
}
"""Parquet codec of a table's staged files, where not :data:`DEFAULT_CODEC` (physical layout only: every reader
decodes both). The dense float tables analysts scan take lz4: their floats compress 2.6x under zstd at ~3x the
encode CPU, and lz4 pages decode faster (rna_normalized, 1,000 samples: 16 % less write CPU, +45 % bytes, DuckDB and
polars scans ~2x faster; bench/README.md, "Whole study build").
"""
DEFAULT_CODEC: dict[str, Any] = {"compression": "zstd", "compression_level": 1}
"""zstd level 1: against polars' default level 3, ~8 % less write CPU and no bigger for integral counts (the ingest's
Float64 count column: 34 vs 39 MB per 20M rows), ~7 % bigger for normalised floats."""
UNCOMPRESSED_FLOATS = frozenset({"rna_normalized"})
"""Tables whose float columns are stored uncompressed in the files the dictionary-frame writer makes (identifiers
keep the table's codec). rna_normalized's floats shrink only ~11 % under lz4 (per-sample scalings of counts and
z-scores), while compressing them was ~35 % of that writer's CPU (bench/README.md, "Session 9: normalise")."""

ROW_GROUP_ROWS = 1_000_000
"""Rows per row group of a staged file."""
WRITE_BATCH_ROWS = 1 << 14
"""Values pyarrow's Parquet writer takes at a time in the dictionary-frame writer (its default: 1,024). Each batch
of a dictionary column pays a fixed cost for its statistics (the distinct indices, then their values): ~30 % of
writing a 2 M-row rna_vst frame, ~20 % of rna_normalized's. The file is the same, byte for byte (test). Not more:
pyarrow 25 counts the definition-level histogram of a batch of over 16,384 values wrongly (apache/arrow#50778,
fixed after 25.0.1), which 32,768 showed here (bench/README.md, "Session 14: whole study build")."""


PARTITIONS: dict[str, list[str]] = {table: ["study_id", "assay"]
                                     for table in ("rna_counts", "rna_abundance", "rna_normalized", "rna_vst")}
"""Partition columns of a new study table, where not ``study_id`` alone (physical layout only: every reader sees
the same columns, types and rows). The long RNA tables hold one ``assay`` value per assay over millions of rows;
as a partition column it is a folder name instead of a Parquet column encoded once per row (+0.4-0.55 CPU s per
20 M rows, ~20 % of bare polars' whole read-unpivot-write; bench/README.md, "Ingest"). A table keeps the layout
it was created with (:meth:`Lake.partition_columns`): a warehouse built before keeps ``study_id`` alone.
"""
_DELTA_CASTS = pl.ScanCastOptions(integer_cast="upcast", float_cast=["upcast", "downcast"],
                                  datetime_cast=["nanosecond-downcast", "millisecond-upcast", "convert-timezone"],
                                  missing_struct_fields="insert", extra_struct_fields="ignore",
                                  categorical_to_string="allow")
"""The casts polars' Delta reader allows a file (``ScanCastOptions._default_iceberg``), for :meth:`Lake.scan`."""
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
"""Folder name of a null partition value (Hive's, which DuckDB reads as NULL): such rows fail the contract."""


class StudyLocked(RuntimeError):
    """Another process holds the study's lock for longer than the timeout."""


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
    return _arrow_schema(table, frozenset(without))


@functools.cache
def _arrow_schema(table: str, without: frozenset[str]) -> pa.Schema:
    """:func:`arrow_schema`, made once per table (~1 ms through an empty frame; every Delta commit asks)."""
    schema = polars_schema(table)
    return pl.DataFrame(schema={k: v for k, v in schema.items() if k not in without}).to_arrow().schema


def _required_where_complete(arrow: pa.Table) -> pa.Table:
    """``arrow`` with every column that holds no null declared non-nullable (the same buffers), so the Parquet
    writer stores it as a REQUIRED column: no definition level per value.

    Why: for a nullable column pyarrow makes and RLE-encodes one definition level per value even when every value
    is there: ~8 of the ~22 ms of writing one 2 M-row float column of rna_normalized (bench/README.md, "Whole
    study build, Session 20"). The values, the statistics (null count 0) and what polars, DuckDB and the Delta
    reader return are the same; files of the same table may differ in it (a frame with a NULL keeps the column
    OPTIONAL), which readers merge like any nullable column.
    """
    fields = [f.with_nullable(False) if f.nullable and arrow.column(i).null_count == 0 else f
              for i, f in enumerate(arrow.schema)]
    return pa.Table.from_arrays(arrow.columns, schema=pa.schema(fields, metadata=arrow.schema.metadata))


class Lake:
    """Delta tables under one root: a local path, or an object-store URI with ``storage_options`` (default: from
    the AWS environment variables). ``service_dir`` holds locks and journals (default ``<root>/_omicsdw`` for a
    local lake, none for an object store).
    """

    def __init__(self, root: str | Path, *, storage_options: dict[str, str] | None = None,
                 service_dir: Path | None = None):
        self.root = str(root).rstrip("/")
        self.is_local = not is_remote(self.root)
        self.storage_options = storage_options if self.is_local or storage_options else storage_options_from_env()
        self.service_dir = service_dir or (Path(self.root.removeprefix("file://"), SERVICE_DIR) if self.is_local
                                           else None)
        self._fs: Any = None
        self._journal: Path | None = None
        self._partitions: dict[str, list[str]] = {}
        self.committed: set[str] = set()
        """Tables this object has committed to (the resource refreshes the catalog when readers see one)."""

    def uri(self, table: str) -> str:
        return f"{self.root}/{table}"

    @property
    def fs(self) -> Any:
        """The s3fs filesystem of an object-store lake (files outside Delta: footers, sizes, deletes)."""
        if self._fs is None:
            self._fs = filesystem(self.storage_options or {})
        return self._fs

    def file_exists(self, path: str) -> bool:
        """Whether ``path`` (relative to the root) is a file of the lake."""
        return Path(self.root, path).is_file() if self.is_local else bool(self.fs.isfile(f"{self.root}/{path}"))

    def _delete(self, table: str, relative: str) -> None:
        uri = f"{self.uri(table)}/{relative}"
        if self.is_local:
            Path(uri).unlink(missing_ok=True)
        elif self.fs.exists(uri):
            self.fs.rm_file(uri)

    # -- reading ------------------------------------------------------------------------------------------
    def exists(self, table: str) -> bool:
        """Whether the table exists: a local table this thread holds open (:meth:`delta`) does while the commit
        file of the version it holds is the one it read; otherwise delta-rs looks.

        Why: delta-rs's look lists the table's ``_delta_log`` folder, ~10 us a file there (one commit file per
        study and table, a checkpoint every :data:`CHECKPOINT_EVERY`), and a build asks hundreds of times a
        study, so it grew with every study in the warehouse (bench/README.md, "Session 9: growth with the
        warehouse"). The check here is one ``stat``.
        """
        uri = self.uri(table)
        if self.is_local and _OPEN.__dict__.get("pid") == os.getpid():
            cached = _OPEN.tables.get(uri)
            if cached is not None and cached[1] is not None and _commit_stamp(uri, cached[0].version()) == cached[1]:
                return True
        return DeltaTable.is_deltatable(uri, storage_options=self.storage_options)

    def delta(self, table: str, version: int | None = None) -> DeltaTable:
        """The table at ``version``, else at its newest version.

        The newest version of a local table comes from a DeltaTable this thread opened before, brought up to date
        when the commit file after its version exists (only the commits added since are read): opening a table
        replays its log, ~1-2 ms, and a small study's build asks ~300 times. The object is reused only while the
        commit file of the version it holds is the one it read (same inode, size and mtime), so a table deleted
        and created again is opened anew.
        """
        uri = self.uri(table)
        if version is not None or not self.is_local:
            return DeltaTable(uri, version=version, storage_options=self.storage_options)
        if _OPEN.__dict__.get("pid") != os.getpid():  # none inherited through a fork
            _OPEN.tables, _OPEN.pid = OrderedDict(), os.getpid()
        cache: OrderedDict[str, tuple[DeltaTable, tuple[int, int, int] | None]] = _OPEN.tables
        cached = cache.pop(uri, None)
        if cached is not None and cached[1] is not None and _commit_stamp(uri, cached[0].version()) == cached[1]:
            delta, stamp = cached
            if _commit_stamp(uri, delta.version() + 1) is not None:  # versions are contiguous: none, no update
                delta.update_incremental()
                stamp = _commit_stamp(uri, delta.version())
        else:
            delta = DeltaTable(uri, storage_options=self.storage_options)
            stamp = _commit_stamp(uri, delta.version())
        cache[uri] = (delta, stamp)
        while len(cache) > _OPEN_MAX:
            cache.popitem(last=False)
        return delta

    def partition_columns(self, table: str) -> list[str]:
        """The table's partition columns: those it was created with (kept by this object: a table's partitioning
        never changes), else those a new table gets.
        """
        if table in self._partitions:
            return self._partitions[table]
        if not self.exists(table):
            return [] if table in GLOBAL_TABLES else PARTITIONS.get(table, ["study_id"])
        self._partitions[table] = list(self.delta(table).metadata().partition_columns)
        return self._partitions[table]

    def add_actions(self, table: str, version: int | None = None) -> pl.DataFrame:
        """The table's files at ``version`` (default newest), one row each: ``path`` relative to the table as it
        is on disk (the Delta log stores it percent-encoded), ``partition.<column>``, ``num_records`` and so on.
        """
        return _actions(self.delta(table, version))

    def version(self, table: str) -> int | None:
        return self.delta(table).version() if self.exists(table) else None

    def scan(self, table: str, *, version: int | None = None, study_id: str | None = None) -> pl.LazyFrame:
        """LazyFrame over a table (optionally at a Delta version, for time travel), columns in contract order.

        The files are those of the version asked for (default: the newest when called). A local table is read
        from its files directly (:meth:`_scan_local`); an object-store table through polars' Delta reader.
        """
        if self.is_local:
            local = self._scan_local(table, version, study_id)
            if local is not None:
                return local
        frame = pl.scan_delta(self.uri(table), version=version, storage_options=self.storage_options)
        if study_id is not None:
            frame = frame.filter(pl.col("study_id") == study_id)
        return frame.select(list(polars_schema(table)))

    def _scan_local(self, table: str, version: int | None, study_id: str | None) -> pl.LazyFrame | None:
        """The rows of the table's files at ``version`` (of the study's partition only, for a study), read with
        ``scan_parquet`` as polars' Delta reader reads them (missing columns as nulls, the same casts), partition
        values from the log; None for a table polars' reader must handle (reader features such as deletion
        vectors).

        Why: ``scan_delta`` opens the table at the version and resolves every file of it again on each collect
        (~4-8 ms); a small study's build collects ~75 such scans. The newest version comes from this thread's
        open table (:meth:`delta`).
        """
        newest = self.delta(table)
        partitions = list(newest.metadata().partition_columns)
        by_study = study_id is not None and "study_id" in partitions
        delta = newest
        if version is not None and version != newest.version() and not (
                by_study and self._untouched_since(table, version, str(study_id))):
            delta = DeltaTable(self.uri(table), version=version)
        if delta.protocol().min_reader_version > 1:
            return None
        types = polars_schema(table)
        actions = _actions(delta)
        if by_study and not actions.is_empty():
            actions = actions.filter(pl.col("partition.study_id") == study_id)
        if actions.is_empty():
            return pl.LazyFrame(schema=types)
        groups: dict[tuple[Any, ...], list[str]] = {}
        for row in actions.select("path", *(f"partition.{c}" for c in partitions)).iter_rows():
            groups.setdefault(row[1:], []).append(row[0])
        options = _as_committed(types, partitions)
        parts = [_partition_scan(self.uri(table), relatives, dict(zip(partitions, key, strict=True)), types,
                                 glob=False, **options)
                 for key, relatives in groups.items()]
        frame = parts[0] if len(parts) == 1 else pl.concat(parts, how="vertical")
        if study_id is not None and not by_study:
            frame = frame.filter(pl.col("study_id") == study_id)
        return frame.select(list(types))

    def _untouched_since(self, table: str, version: int, study_id: str) -> bool:
        """Whether every commit after ``version`` up to the newest is a :meth:`commit` of another study, so the
        study's partition holds the same files at ``version`` as now (each such commit replaces its own study's
        partition only). Any other commit (of this study, a global one, one not made by :meth:`commit`, a gap in
        the history) says no, and the table is opened at ``version``.
        """
        later = [c for c in self.history(table) if c.get("version", -1) > version]
        return (len(later) == self.delta(table).version() - version
                and all(c.get(FINGERPRINT_KEY) is not None and c.get(STUDY_KEY) not in (None, GLOBAL, study_id)
                        for c in later))

    def last_commit(self, table: str, study_id: str | None) -> dict[str, Any] | None:
        """Metadata of the newest commit that replaced this study (or the whole global table); None if never."""
        if not self.exists(table):
            return None
        key = study_id or GLOBAL
        return next((c for c in self.history(table) if c.get(STUDY_KEY) == key), None)

    def history(self, table: str) -> list[dict[str, Any]]:
        """Commit infos of ``table``, newest first, read incrementally: commits never change, so a process keeps
        those it read (per table and Delta table id) and reads only the ones added since. A build looks a table's
        history up ~3 times per study; reading it whole costs time linear in its commits (18 ms at 300).
        """
        delta = self.delta(table)
        version = delta.version()
        key = (self.uri(table), str(delta.metadata().id))
        known, commits = _HISTORY.get(key, (-1, []))
        if known == version:
            return commits
        if -1 < known < version:
            newer = delta.history(version - known)
            if [c.get("version") for c in newer] == list(range(version, known, -1)):
                commits = newer + commits
            else:  # a log file missing (log clean-up) or an unexpected order: read it whole
                commits = delta.history()
        else:
            commits = delta.history()
        _HISTORY[key] = (version, commits)
        return commits

    def last_fingerprint(self, table: str, study_id: str | None) -> str | None:
        """Fingerprint recorded by the newest commit that replaced this study (or the whole global table)."""
        commit = self.last_commit(table, study_id)
        return None if commit is None else commit.get(FINGERPRINT_KEY)

    def study_version(self, table: str, study_id: str) -> int | None:
        """Delta version of the newest commit that replaced this study in ``table`` (None: never loaded)."""
        commit = self.last_commit(table, study_id)
        return None if commit is None else int(commit["version"])

    def scan_study(self, table: str, study_id: str) -> pl.LazyFrame:
        """The study's rows of ``table`` at its newest commit; no rows when the study was never loaded into it."""
        version = self.study_version(table, study_id)
        if version is None:
            return pl.LazyFrame(schema=polars_schema(table))
        return self.scan(table, version=version, study_id=study_id)

    def study_files(self, table: str, study_id: str | None) -> tuple[int, list[str]]:
        """Current version of the table and the relative paths of the study's files (all files if global)."""
        version, actions = self._study_actions(table, study_id)
        return version, sorted(actions["path"].to_list()) if actions.height else []

    def study_files_and_rows(self, table: str, study_id: str) -> tuple[int, list[str], int]:
        """:meth:`study_files` of a study and the rows in those files (the log's ``num_records``), from one read
        of the version's files (publication asks for every table of a study).
        """
        version, actions = self._study_actions(table, study_id)
        if not actions.height:
            return version, [], 0
        return version, sorted(actions["path"].to_list()), int(actions["num_records"].sum())

    def _study_actions(self, table: str, study_id: str | None) -> tuple[int, pl.DataFrame]:
        """Current version of the table and the add actions of the study's files (all files if global)."""
        delta = self.delta(table)
        version, actions = delta.version(), _actions(delta)
        if study_id is not None and not actions.is_empty():
            actions = actions.filter(pl.col("partition.study_id") == study_id)
        return version, actions

    # -- sessions: lock, journal, clean-up ------------------------------------------------------------------
    @contextmanager
    def study_session(self, study_id: str | None, *, timeout: float = LOCK_TIMEOUT_S) -> Iterator[Lake]:
        """Hold the study's write lock (waiting up to ``timeout`` s) and journal what is staged meanwhile.

        On entry, files staged by an earlier session of the study that never committed them (a killed run)
        are deleted. Not re-entrant: take it once per asset body, not in functions it calls.
        """
        if self.service_dir is None or self._journal is not None:
            yield self
            return
        folder = self.service_dir / "studies" / (study_id or "_global")
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "lock", "a+") as lock:
            _acquire(lock, study_id or "the gene reference", timeout)
            try:
                self._sweep(folder)
                self._journal = folder / f"staged-{os.getpid()}-{uuid.uuid4().hex[:8]}.txt"
                self._journal.touch()
                yield self
                self._journal.unlink(missing_ok=True)
            finally:
                self._journal = None
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def study_build(self, study_id: str, *, on_wait: Callable[[str], None] | None = None,
                    timeout: float | None = None) -> Iterator[None]:
        """Hold the lock of a whole build of the study (``omicsdw build``), waiting while another holds it, up to
        ``timeout`` s (``BUILD_LOCK_TIMEOUT_S``, ``OMICSDW_BUILD_LOCK_TIMEOUT``, 6 h: a healthy build of a large
        study can take longer than a step's 30 min): then :class:`StudyLocked` naming the holder. A stopped
        holder (Ctrl-Z, a stuck mount) blocked the build for ever, and every study after this one in its list.

        The study's write lock (:meth:`study_session`) is taken per step, so two CLI builds of one study took turns
        step by step, each running every step; with this one the second waits for the first to finish, then finds
        the study unchanged. A lock file of its own (``build.lock`` beside the study's ``lock``): the steps inside
        still take theirs, and runs Dagster launches (sensor, UI) take only those, as before. ``on_wait`` is told
        the holder (``process N on HOST``) once, when the lock is found taken.
        """
        if self.service_dir is None:
            yield
            return
        folder = self.service_dir / "studies" / study_id
        folder.mkdir(parents=True, exist_ok=True)
        limit = BUILD_LOCK_TIMEOUT_S if timeout is None else timeout
        with open(folder / "build.lock", "a+") as lock:
            told, start = False, time.monotonic()
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not told and on_wait is not None:
                        told = True
                        on_wait(_build_holder(lock))
                    if time.monotonic() - start > limit:
                        raise StudyLocked(f"study {study_id!r} is still being built by {_build_holder(lock)} after "
                                          f"waiting {limit:.0f} s (OMICSDW_BUILD_LOCK_TIMEOUT); wait for it to "
                                          "finish, or stop it") from None
                    time.sleep(0.2)
            try:
                lock.seek(0)
                lock.truncate()
                lock.write(f"process {os.getpid()} on {socket.gethostname()}")
                lock.flush()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def sessions_in_progress(self) -> list[str]:
        """Studies (``_global``: the gene reference) whose write lock another session holds now: runs in progress."""
        if self.service_dir is None:
            return []
        root = self.service_dir / "studies"  # an object-store lake's are in the warehouse folder (it said none)
        if not root.is_dir():
            return []
        own = self._journal.parent if self._journal is not None else None
        busy = []
        for lock_path in sorted(root.glob("*/lock")):
            if lock_path.parent == own:
                continue
            try:
                descriptor = os.open(lock_path, os.O_RDWR)
            except OSError:  # a read-only warehouse (a mount, a snapshot): flock takes a file open for reading
                descriptor = os.open(lock_path, os.O_RDONLY)  # on a local file system; doctor crashed with EROFS
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                busy.append(lock_path.parent.name)
            else:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
            finally:
                os.close(descriptor)
        return busy

    def _sweep(self, folder: Path) -> None:
        """Delete staged files of dead sessions that no table's current version references, then their journals."""
        for journal in folder.glob("staged-*.txt"):
            entries = [line.split("\t", 1) for line in journal.read_text().splitlines() if "\t" in line]
            current: dict[str, set[str]] = {}
            for table, relative in entries:
                if table not in current:
                    current[table] = set(self.study_files(table, None)[1]) if self.exists(table) else set()
                if relative not in current[table]:
                    self._delete(table, relative)
            journal.unlink()

    def _record(self, table: str, relative: str) -> None:
        if self._journal is not None:
            with open(self._journal, "a") as fh:
                fh.write(f"{table}\t{relative}\n")

    # -- staging ------------------------------------------------------------------------------------------
    def ensure_tables(self, tables: Iterable[str]) -> None:
        """Create missing tables empty, so parallel study runs never race to create the same table."""
        for table in tables:
            if self.exists(table):
                continue
            partition = self.partition_columns(table) or None
            empty = pl.DataFrame(schema=polars_schema(table)).to_arrow()
            try:
                write_deltalake(self.uri(table), empty, partition_by=partition, mode="ignore",
                                storage_options=self.storage_options,
                                commit_properties=CommitProperties(custom_metadata={"omicsdw.operation": "create"}))
            except CommitFailedError:
                if not self.exists(table):  # another run created it between our check and our commit: fine
                    raise

    def stage(self, table: str, data: pl.LazyFrame | pl.DataFrame, *, study_id: str | None,
              assay: str | None = None) -> StagedFiles:
        """Stream ``data`` into new Parquet files of the table (invisible to readers until committed).

        For a table partitioned by assay, ``assay`` is the assay of every row; without it the rows are collected
        and written a file per assay (:meth:`stage_frames`).
        """
        if assay is None and "assay" in self._folders(table, study_id, None):
            return self.stage_frames(table, [data if isinstance(data, pl.DataFrame) else data.collect()],
                                     study_id=study_id)
        staged, sink = self.plan(table, data, study_id=study_id, assay=assay)
        sink.collect()
        return staged

    def _folders(self, table: str, study_id: str | None, assay: str | None) -> dict[str, str | None]:
        """Partition column -> value of a new file of the study (no folders for a global table)."""
        if study_id is None:
            return {}
        return {"study_id": study_id, **({"assay": assay} if "assay" in self.partition_columns(table) else {})}

    def plan(self, table: str, data: pl.LazyFrame | pl.DataFrame, *, study_id: str | None,
             assay: str | None = None) -> tuple[StagedFiles, pl.LazyFrame]:
        """A lazy sink of ``data`` into one new Parquet file of the table; run it with ``pl.collect_all``.

        In a table partitioned by assay every row of ``data`` must be of assay ``assay`` (None: a null assay):
        the value goes into the path, not the file.
        """
        types = polars_schema(table)
        columns, codec, relative, target = self._new_file(table, study_id, assay)
        lazy = data.lazy().select([pl.col(c).cast(types[c], strict=True) for c in columns])
        sink = lazy.sink_parquet(target, lazy=True, storage_options=self.storage_options,
                                 row_group_size=ROW_GROUP_ROWS, **codec)
        return StagedFiles(table, study_id, [relative], self), sink

    def _new_file(self, table: str, study_id: str | None, assay: str | None
                  ) -> tuple[list[str], dict[str, Any], str, str]:
        """The stored columns, codec, path relative to the table and full path of a new staged file (journaled)."""
        folders = self._folders(table, study_id, assay)
        columns = [c for c in polars_schema(table) if c not in folders]
        codec = PARQUET_CODECS.get(table, DEFAULT_CODEC)
        name = f"part-{uuid.uuid4().hex}.{codec['compression']}.parquet"
        relative = "/".join([*(f"{k}={_encode(v)}" for k, v in folders.items()), name])
        target = f"{self.uri(table)}/{relative}"
        if self.is_local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        self._record(table, relative)
        return columns, codec, relative, target

    def _write_dictionary_frame(self, table: str, frame: pl.DataFrame, *, columns: list[str], codec: dict[str, Any],
                                target: str) -> None:
        """Write the ``columns`` of a frame whose string columns are dictionary-coded (``pl.Enum``) to ``target`` (a
        new staged file), keeping the codes.

        Why: the long tables of normalisation repeat a few thousand identifiers over millions of rows. As strings,
        each row's identifier is copied into the frame, then hashed again by the writer's dictionary encoder; as
        an Enum it is a small integer, and pyarrow writes an Arrow dictionary as the Parquet dictionary page and
        its indices directly (bench/README.md, "Session 9: normalise"). Without the Arrow schema in the footer the
        columns are plain Parquet strings: every reader sees the contract's ``String`` columns, as from polars.
        """
        types = polars_schema(table)
        coded = [c for c in columns if isinstance(frame.schema[c], pl.Enum) and types[c] == pl.String]
        arrow = _required_where_complete(frame.select(
            [pl.col(c) if c in coded else pl.col(c).cast(types[c], strict=True) for c in columns]).to_arrow())
        compression: str | dict[str, str] = codec["compression"]
        if table in UNCOMPRESSED_FLOATS:
            compression = {c: "none" if types[c].is_float() else codec["compression"] for c in columns}
        options: dict[str, Any] = {
            "compression": compression, "compression_level": codec.get("compression_level"),
            "use_dictionary": [c for c in columns if not types[c].is_float()],  # as polars: no float dictionaries
            "row_group_size": ROW_GROUP_ROWS, "store_schema": False, "write_statistics": True,
            "write_batch_size": WRITE_BATCH_ROWS}
        if self.is_local:
            pq.write_table(arrow, target, **options)
        else:
            with self.fs.open(target, "wb") as fh:
                pq.write_table(arrow, fh, **options)

    def stage_frames(self, table: str, frames: Iterable[pl.DataFrame], *, study_id: str | None) -> StagedFiles:
        """Write each frame as its own Parquet file of one staged set (a result too big for memory, block by block).

        No frame at all stages nothing, which commits an empty study. In a table partitioned by assay each frame
        is written as a file per assay it holds (one, for the frames of a study's stages).
        """
        relative: list[str] = []
        try:
            for frame in frames:
                for assay, part in self._assay_parts(table, frame, study_id):
                    if any(isinstance(t, pl.Enum) for t in part.schema.values()):
                        columns, codec, path, target = self._new_file(table, study_id, assay)
                        relative.append(path)
                        self._write_dictionary_frame(table, part, columns=columns, codec=codec, target=target)
                        continue
                    staged, sink = self.plan(table, part, study_id=study_id, assay=assay)
                    relative += staged.relative_paths
                    sink.collect()
        except BaseException:
            self.discard(StagedFiles(table, study_id, relative, self))
            raise
        return StagedFiles(table, study_id, relative, self)

    def _assay_parts(self, table: str, frame: pl.DataFrame, study_id: str | None
                     ) -> list[tuple[str | None, pl.DataFrame]]:
        """``frame`` split by assay where the table is partitioned by it (no copy when it holds one assay)."""
        if "assay" not in self._folders(table, study_id, None):
            return [(None, frame)]
        column = frame.get_column("assay")
        if frame.height and not column.null_count() and column.min() == column.max():
            return [(column[0], frame)]
        parts = frame.partition_by("assay", maintain_order=True, as_dict=True)
        return [(key[0], part) for key, part in parts.items()]  # type: ignore[misc]

    def _metadata(self, uri: str) -> pq.FileMetaData:
        if self.is_local:
            return pq.read_metadata(uri)
        with self.fs.open(uri, "rb") as fh:
            return pq.ParquetFile(fh).metadata

    def staged_rows(self, staged: StagedFiles) -> int:
        """Rows in staged files, from their Parquet footers."""
        return sum(self._metadata(f"{self.uri(staged.table)}/{relative}").num_rows
                   for relative in staged.relative_paths)

    def staged_statistics(self, staged: StagedFiles) -> dict[str, ColumnStatistics | None]:
        """Per column stored in the staged files: null count and min / max over every row group, from the footers.

        None for a column some row group has no statistics for (its checks then read the rows). ``study_id`` is
        not stored, so it is not a key (a constant); another partition column (``assay``) is, from the paths.
        """
        found: dict[str, ColumnStatistics] = {}
        missing: set[str] = set()
        for relative in staged.relative_paths:
            metadata = self._metadata(f"{self.uri(staged.table)}/{relative}")
            for name, value in _partition_values(relative).items():
                if name != "study_id":
                    nulls = metadata.num_rows if value is None else 0
                    found[name] = found.get(name, ColumnStatistics()).merge(nulls, value, value)
            for rg in range(metadata.num_row_groups):
                group = metadata.row_group(rg)
                for c in range(group.num_columns):
                    column = group.column(c)
                    name, stats = column.path_in_schema, column.statistics
                    if stats is None or (not stats.has_min_max and stats.null_count != group.num_rows):
                        missing.add(name)
                        continue
                    lo, hi = (stats.min, stats.max) if stats.has_min_max else (None, None)
                    found[name] = found.get(name, ColumnStatistics()).merge(stats.null_count or 0, lo, hi)
        return {name: None if name in missing else found.get(name) for name in found.keys() | missing}

    def scan_staged(self, staged: StagedFiles) -> pl.LazyFrame:
        """Read staged (uncommitted) files as the table's rows, for validation before the commit."""
        if not staged.relative_paths:
            return pl.LazyFrame(schema=polars_schema(staged.table))
        return self.scan_files(staged.table, staged.relative_paths)

    def scan_files(self, table: str, relative_paths: list[str], *, typed: bool = False) -> pl.LazyFrame:
        """Rows of files of the table (paths relative to it), partition columns from the paths, in contract order.

        ``typed``: read the files as the contract's columns (missing ones as nulls, the Delta reader's casts), as
        committed files are read, so no file is opened before a filter on a partition column has chosen it;
        otherwise each file's own types, as a contract check of staged files must see them.
        """
        types = polars_schema(table)
        groups: dict[tuple[tuple[str, str | None], ...], list[str]] = {}
        for relative in relative_paths:
            groups.setdefault(tuple(_partition_values(relative).items()), []).append(relative)
        options: dict[str, Any] = {"storage_options": self.storage_options}
        if typed:
            options |= _as_committed(types, {name for key in groups for name, _ in key})
        parts = [_partition_scan(self.uri(table), relatives, dict(key), types, **options)
                 for key, relatives in groups.items()]
        frame = parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed")
        return frame.select(list(types))

    # -- committing (only through warehouse.commit) --------------------------------------------------------------
    def commit(self, staged: StagedFiles, *, fingerprint: str, inputs: str | None = None,
               metadata: Mapping[str, str] | None = None) -> WriteResult:
        """Replace the study's rows (or the whole global table) by the staged files in one Delta commit; tables in
        ``APPEND_TABLES`` keep their rows and gain the staged ones. ``metadata`` joins the commit's metadata.
        """
        added = [a for relative in staged.relative_paths if (a := self._add_action(staged, relative)) is not None]
        actions: list[AddAction | RemoveAction] = list(added)  # the transaction's type; only adds here
        rows = sum(json.loads(a.stats)["numRecords"] for a in added)
        custom = {**(metadata or {}), FINGERPRINT_KEY: fingerprint, STUDY_KEY: staged.study_id or GLOBAL}
        if inputs is not None:
            custom[INPUTS_KEY] = inputs
        filters = [("study_id", "=", staged.study_id)] if staged.study_id is not None else None
        schema = arrow_schema(staged.table)
        for attempt in range(_COMMIT_RETRIES):
            try:
                table = self.delta(staged.table)
                # append-only tables (feature-set versions) add files; every other commit replaces its partition
                mode = "append" if staged.table in APPEND_TABLES else "overwrite"
                table.create_write_transaction(actions, mode=mode, schema=schema, partition_filters=filters,
                                               commit_properties=CommitProperties(custom_metadata=custom))
                break
            except CommitFailedError:
                if attempt == _COMMIT_RETRIES - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        self.committed.add(staged.table)
        delta = self.delta(staged.table)
        checkpoint_if_due(delta)
        return WriteResult(staged.table, staged.study_id, delta.version(), rows, len(actions), skipped=False)

    def unchanged(self, table: str, study_id: str | None) -> WriteResult:
        """The result reported when a study's input did not change since its last commit."""
        frame = self.scan(table) if study_id is None else self.scan(table, study_id=study_id)
        rows = frame.select(pl.len()).collect().item()
        return WriteResult(table, study_id, self.delta(table).version(), rows, 0, skipped=True)

    def discard(self, staged: StagedFiles) -> None:
        """Remove staged files of a run that will not be committed."""
        for relative in staged.relative_paths:
            self._delete(staged.table, relative)

    def _add_action(self, staged: StagedFiles, relative: str) -> AddAction | None:
        uri = f"{self.uri(staged.table)}/{relative}"
        metadata = self._metadata(uri)
        if metadata.num_rows == 0:
            self.discard(StagedFiles(staged.table, staged.study_id, [relative], self))
            return None
        size = Path(uri).stat().st_size if self.is_local else int(self.fs.size(uri))
        return AddAction(relative, size, _partition_values(relative), int(time.time() * 1000), True,
                         json.dumps(_file_stats(metadata)))


@dataclass(frozen=True)
class ColumnStatistics:
    """Null count and min / max (None while every value seen is null) of one column over staged files."""

    nulls: int = 0
    min: Any = None
    max: Any = None

    def merge(self, nulls: int, lo: Any, hi: Any) -> ColumnStatistics:
        low = lo if self.min is None else self.min if lo is None else min(self.min, lo)
        high = hi if self.max is None else self.max if hi is None else max(self.max, hi)
        return ColumnStatistics(self.nulls + nulls, low, high)


@dataclass(frozen=True)
class StagedFiles:
    """Parquet files written for one table and study, not yet committed."""

    table: str
    study_id: str | None
    relative_paths: list[str]
    lake: Lake

    def __add__(self, other: StagedFiles) -> StagedFiles:
        return StagedFiles(self.table, self.study_id, self.relative_paths + other.relative_paths, self.lake)


def _encode(value: str | None) -> str:
    """A partition value as a folder name: percent-encoded (DuckDB's hive reader decodes it), Hive's for null."""
    return NULL_PARTITION if value is None else quote(value, safe="")


def _as_committed(types: Mapping[str, Any], partitions: Iterable[str]) -> dict[str, Any]:
    """``scan_parquet`` options reading committed files as polars' Delta reader reads them: the contract's columns
    but the partition columns (those are in the paths), missing ones as nulls, extra ones ignored, its casts.
    """
    in_paths = set(partitions)
    stored = pl.Schema({c: t for c, t in types.items() if c not in in_paths})
    return {"schema": stored, "missing_columns": "insert", "extra_columns": "ignore", "cast_options": _DELTA_CASTS}


def _partition_scan(root: str, relatives: list[str], values: Mapping[str, str | None], types: Mapping[str, Any],
                    **options: Any) -> pl.LazyFrame:
    """The files of one partition (paths relative to the table ``root``) with its partition columns.

    The columns come from the ``column=value`` folders (polars' hive reading) when the paths say exactly
    ``values``, so a filter on them skips the partition's files unread: with the values as literal columns, as
    otherwise, polars reads every partition of a whole-table scan before filtering (a reader of one study of a
    1,000-study table would read all 1,000). Literals for anything else: a null value, a path that does not spell
    the values, an ``=`` in the root (polars would take that folder for a partition too).
    """
    paths = [f"{root}/{relative}" for relative in relatives]
    if (values and "=" not in root and None not in values.values()
            and all(_partition_values(relative) == values for relative in relatives)):
        return pl.scan_parquet(paths, hive_partitioning=True, hive_schema={c: types[c] for c in values}, **options)
    return (pl.scan_parquet(paths, hive_partitioning=False, **options)
            .with_columns(*(pl.lit(value, types[c]).alias(c) for c, value in values.items())))


def _partition_values(relative: str) -> dict[str, str | None]:
    """Partition column -> value of a file, from the ``column=value`` folders of its path (relative to the table)."""
    values: dict[str, str | None] = {}
    for folder in relative.split("/")[:-1]:
        name, equals, value = folder.partition("=")
        if equals:
            values[name] = None if value == NULL_PARTITION else unquote(value)
    return values


_ACTIONS: OrderedDict[tuple[str, str, int, tuple[int, int, int]], pl.DataFrame] = OrderedDict()
"""Add actions read so far, by (table URI, Delta table id, version, commit file stamp), least recently used first:
see :func:`_actions`."""
_ACTIONS_MAX = 64
_ACTIONS_MAX_FILES = 200_000
"""At most this many files' add actions kept (~0.4 KB each: ~80 MB in a long-running code server)."""
_ACTIONS_LOCK = threading.Lock()


def _forget_actions_in_child() -> None:
    """A forked child starts with its own lock (the parent's may have been held by another thread at the fork)."""
    global _ACTIONS_LOCK
    _ACTIONS_LOCK = threading.Lock()
    _ACTIONS.clear()


os.register_at_fork(after_in_child=_forget_actions_in_child)


def _actions(delta: DeltaTable) -> pl.DataFrame:
    """Add actions of a table version, paths decoded (the log percent-encodes them; most need no decoding).

    Kept per local table version: every scan, a study's file list and its publication read them, ~0.5-0.8 ms each
    (the whole table's files, so growing with the warehouse), ~100 times a small study, mostly of versions already
    read by an earlier stage of the study. The key holds the version's commit file stamp (one ``stat``, as
    :meth:`Lake.delta` checks), not only the table id: a lake restored from a backup under a running process (a
    Dagster code server) keeps its table ids, and its next commit is a new file under an old version number.
    Object-store tables are not kept (no cheap stamp).
    """
    version = delta.version()
    stamp = None if is_remote(delta.table_uri) else _commit_stamp(delta.table_uri, version)
    key = (delta.table_uri, str(delta.metadata().id), version, stamp) if stamp is not None else None
    if key is not None:
        with _ACTIONS_LOCK:
            if key in _ACTIONS:
                _ACTIONS.move_to_end(key)
                return _ACTIONS[key]
    actions = pl.DataFrame(delta.get_add_actions(flatten=True))
    if not actions.is_empty() and actions["path"].str.contains("%", literal=True).any():
        actions = actions.with_columns(pl.Series("path", [unquote(p) for p in actions["path"]], dtype=pl.String))
    if key is None:
        return actions
    with _ACTIONS_LOCK:
        _ACTIONS[key] = actions
        while len(_ACTIONS) > 1 and (len(_ACTIONS) > _ACTIONS_MAX
                                     or sum(kept.height for kept in _ACTIONS.values()) > _ACTIONS_MAX_FILES):
            _ACTIONS.popitem(last=False)
    return actions


def checkpoint_if_due(delta: DeltaTable) -> None:
    """Write a checkpoint of the table's version when it is a multiple of :data:`CHECKPOINT_EVERY`.

    Runs after the commit, which stands whatever happens here: delta-rs writes the checkpoint, then
    ``_last_checkpoint``, each to a temporary file renamed into place, so a kill leaves at worst an older
    ``_last_checkpoint`` or a temporary file readers ignore (tests/warehouse/test_checkpoints.py). A failure is logged
    and the table stays as readable as without it.
    """
    version = delta.version()
    if version <= 0 or version % CHECKPOINT_EVERY:
        return
    try:
        delta.create_checkpoint()
    except (DeltaError, OSError) as exc:
        logging.getLogger(__name__).warning("no Delta checkpoint of %s at version %d: %s", delta.table_uri, version,
                                            exc)


def _commit_stamp(uri: str, version: int) -> tuple[int, int, int] | None:
    """Inode, size and mtime of a local table's commit file of ``version`` (None: gone, e.g. the log cleaned)."""
    try:
        stat = os.stat(Path(uri.removeprefix("file://"), "_delta_log", f"{version:020d}.json"))
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


_WAITED: set[str] = set()
"""Locks this process has said it waits for (each study's steps take the lock one by one)."""

WAIT_NOTICE_S = 1.0
"""A wait for a study's lock is said once it has lasted this long. Two builds of one study take turns step by step:
the first one's next step waits a moment for the second to find the study unchanged, and saying so at once made each
build print that it waits for the other."""


def _acquire(lock: Any, what: str, timeout: float) -> None:
    """Flock the open file, polling until ``timeout``; the holder's pid is written for the message."""
    start = time.monotonic()
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            waited = time.monotonic() - start
            if waited >= WAIT_NOTICE_S and what not in _WAITED:  # once per study and process: not a hung build
                _WAITED.add(what)
                logging.getLogger(__name__).warning(
                    "waiting for %s: it is being written by %s, another run (runs of one study take turns step "
                    "by step; up to %.0f s, OMICSDW_LOCK_TIMEOUT)", what, _holder(lock), timeout)
            if waited > timeout:
                raise StudyLocked(f"{what} is being written by {_holder(lock)} for more than {timeout:.0f} s; "
                                  "wait for it to finish, or stop it") from None
            time.sleep(0.2)
    lock.seek(0)
    lock.truncate()
    lock.write(f"process {os.getpid()}")
    lock.flush()


def _build_holder(lock: Any) -> str:
    """``process N on HOST`` holding a build lock: the host from the text it wrote, when that text is its own."""
    holder = _holder(lock)
    lock.seek(0)
    written = lock.read().strip()
    return written if written.startswith(f"{holder} on ") else holder


def _holder(lock: Any) -> str:
    """``process N`` holding the flock of the open file: from the kernel's lock table where there is one (Linux),
    else the pid the holder wrote. That text is the previous holder's until the new one has written it, which can
    be this very process, so it is not trusted when the kernel can say.
    """
    info = os.fstat(lock.fileno())
    inode = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks") as table:
            for entry in table:  # "1: FLOCK  ADVISORY  WRITE 1234 fe:00:2828140 0 EOF"; waiters' lines hold "->"
                fields = entry.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == inode and fields[4] != "0":
                    return f"process {fields[4]}"
    except OSError:
        pass
    lock.seek(0)
    written = lock.read().strip().split(" on ", 1)[0]  # a build lock's text names the host too
    return written if written and written != f"process {os.getpid()}" else "another process"


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

