"""Validate and commit one ingested study: every table or none, issues always.

The study's tables are staged together (one polars plan, so an input file is scanned once); rows with a problem
(a parser's, a value check's, or a record-level contract violation) are split off into ``ingest_issues`` (the
quarantine) with their file and line; then :func:`warehouse.commit.commit_tables` checks every staged table
against its pandera contract and commits all of them or none. A study with errors commits its ``ingest_issues``
alone, so the problems are queryable while the previous good version of every other table stays what readers
see. A load that would leave a study with data in no omics table is refused unless the study is removed
explicitly (``omicsdw remove``): a typo in study.yaml never wipes a study.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from schemas.tables import INGEST_TABLES, polars_schema
from schemas.validate import contract_flags
from transforms.expression.study import SHARED_BLOCK_BYTES, DenseBlock, DenseBlockBuilder
from transforms.ingest.genes import GeneReference
from transforms.ingest.harmonise import quarantine_rows
from transforms.ingest.study import StudyIngest, declared_study_id, file_stamps, load_fingerprint, read_study
from transforms.issues import ISSUE_SCHEMA
from warehouse.commit import commit_tables
from warehouse.lake import Lake, StagedFiles, WriteResult
from warehouse.publish import DATA_LAYERS, published_rows

DATA_TABLES = [t for t in INGEST_TABLES if t != "ingest_issues"]


@dataclass
class StudyLoad:
    """Outcome of loading one study: per-table writes, contract failures and the issues recorded."""

    study_id: str
    ok: bool
    writes: dict[str, WriteResult]
    check_failures: dict[str, list[str]]
    issues: pl.DataFrame
    metadata: dict[str, dict[str, object]] = field(default_factory=dict)
    counts_block: tuple[str, DenseBlock] | None = None
    """(assay, block) of the rna_counts rows committed, when asked for (``keep_counts``) and the study is ok."""

    @property
    def errors(self) -> pl.DataFrame:
        return self.issues.filter(pl.col("severity") == "error")

    @property
    def unchanged(self) -> bool:
        return bool(self.writes) and all(w.skipped for w in self.writes.values())


_ROUTING = {"problem": pl.String, "problem_code": pl.String, "problem_column": pl.String, "raw": pl.String,
            "line": pl.Int64, "column": pl.String}


def _combined(table: str, frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    """One frame of a table's parts with the routing columns and the record-level contract flags."""
    if not frames:
        combined = pl.LazyFrame(schema=polars_schema(table))
    else:
        combined = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    schema = combined.collect_schema()
    combined = combined.with_columns(
        *(pl.lit(None, dtype).alias(c) for c, dtype in _ROUTING.items() if c not in schema),
        *([] if "file" in schema else [pl.lit(f"({table})").alias("file")]))
    return contract_flags(table, combined)


def _parts(lake: Lake, table: str, ingest: StudyIngest, combined: pl.LazyFrame
           ) -> list[tuple[str | None, pl.LazyFrame]]:
    """What to write of a table: its combined frame, or one per assay where the table is partitioned by assay
    (the assay then goes into the path; every frame of a reader is of one assay).
    """
    if "assay" not in lake.partition_columns(table):
        return [(None, combined)]
    by_assay: dict[str | None, list[pl.LazyFrame]] = {}
    for assay, frame in zip(ingest.assays.get(table, []), ingest.tables.get(table, []), strict=True):
        by_assay.setdefault(assay, []).append(frame)
    return [(assay, _combined(table, frames)) for assay, frames in by_assay.items()]


def _quarantine(combined: dict[str, pl.LazyFrame], tables: list[str]) -> list[pl.DataFrame]:
    """Problem rows of ``tables`` as ingest_issues rows (spilled through Parquet: bounded memory)."""
    with tempfile.TemporaryDirectory(prefix="omicsdw-quarantine-") as tmp:
        targets = {t: Path(tmp, f"{t}.parquet") for t in tables}
        pl.collect_all([quarantine_rows(combined[t]).sink_parquet(targets[t], lazy=True) for t in tables])
        return [pl.read_parquet(f) for f in targets.values() if f.exists()]


def _max_cells() -> int:
    """Cells of the largest count block the ingest builds: values and lengths, 8 bytes each, in SHARED_BLOCK_BYTES."""
    return SHARED_BLOCK_BYTES // 16


class _CountTee:
    """The dense block (:func:`transforms.expression.study.dense_block`) of the rna_counts rows of one assay, built
    from the batches the ingest writes, in the same polars plan as their Parquet sink (the file is parsed once).

    In memory only, values and lengths together at most ``SHARED_BLOCK_BYTES`` (20,000 genes x 1,677
    samples): a study whose file says it has more cells gets none (no cell is
    touched: a 20,000 x 20,000 ingest keeps its memory bound); one found larger while the rows stream by (files that
    do not say how many rows they hold), or anything going wrong here, abandons it and the load goes on. The QC stage
    then reads the rows back, as without it. The batches come as polars makes them (its morsels, in no order: the
    block does not depend on the rows' order), so none waits for another; on the 20,000 x 1,000 study this costs the
    ingest's body +0.8-1.6 CPU s and saves sample QC's 3.8-4.6 (bench/README.md, "Session 15: whole study build").
    """

    COLUMNS = ("feature_id", "sample_id", "count", "gene_id", "length")

    def __init__(self, assay: str, *, cells: int) -> None:
        self.assay, self.fed = assay, False
        # values and lengths (featureCounts, Salmon, RSEM) are two buffers: each gets half, so both stay within it
        self.builder: DenseBlockBuilder | None = DenseBlockBuilder(in_memory_bytes=SHARED_BLOCK_BYTES // 2,
                                                                   cells=min(cells, _max_cells()))

    def sink(self, rows: pl.LazyFrame) -> pl.LazyFrame:
        """A lazy sink of ``rows`` (what the table's file gets) into the block, cast as the writer casts them."""
        assert self.builder is not None
        self.fed = True
        types = polars_schema("rna_counts")
        written = rows.select(pl.col(c).cast(types[c], strict=True) for c in self.COLUMNS)
        return self.builder.coded(written, value="count").sink_batches(self._add, maintain_order=False, lazy=True)

    def _add(self, batch: pl.DataFrame) -> None:
        if self.builder is None:
            return
        try:
            self.builder.add(batch)
        except Exception:
            self.builder = None

    def block(self) -> DenseBlock | None:
        """The finished block, or None when it was abandoned or never given the rows."""
        if self.builder is None or not self.fed:
            return None
        try:
            block = self.builder.finish()
        except Exception:  # the study is committed: the block is only a saving, QC reads the rows back
            return None
        finally:
            self.builder.close()
            self.builder = None
        kept = [a for a in (block.values, block.lengths) if a is not None]
        return block if sum(a.nbytes for a in kept) <= SHARED_BLOCK_BYTES else None


ATTEMPT_FILES = "omicsdw.attempt.files"
ATTEMPT_CODE = "omicsdw.attempt.code"
ATTEMPT_REFERENCE = "omicsdw.attempt.reference"
"""Keys of the ``ingest_issues`` commit of every ingest attempt (good or failed): the :func:`files_digest` of the
study folder, the code and the gene reference it was read with. The nightly schedule compares them with today's
(stats only, no file hashed) to leave alone a study that failed with the same three."""


def files_digest(stamps: Mapping[str, tuple[int, int]]) -> str:
    """Digest of a study folder's :func:`file_stamps` (names, sizes, mtimes): moves when any file changes."""
    return hashlib.blake2b(json.dumps(sorted(stamps.items())).encode(), digest_size=16).hexdigest()


def load_folder(lake: Lake, folder: Path, *, reference: GeneReference, code_version: str,
                keep_counts: bool = False, run: Mapping[str, str] | None = None) -> StudyLoad:
    """Read and load one study folder (:func:`read_study`, then :func:`load_study`), without reading it when its
    files, the gene reference and the code are those of the study's last good load: the read would give the same
    tables, so an unchanged study costs its content hash and a look at two Delta logs, not a parse of every file.
    The attempt's commit of ``ingest_issues`` records what it was made with (:data:`ATTEMPT_FILES`, ...) and
    ``run`` (the run's id and launcher, :mod:`warehouse.status`).
    """
    folder = folder.absolute()
    study_id, _ = declared_study_id(folder)
    before: dict[str, tuple[int, int]] = {}
    fingerprint = load_fingerprint(folder, reference=reference, code_version=code_version, stamps=before)
    if study_id is not None and (unchanged := unchanged_load(lake, study_id, fingerprint)) is not None:
        return unchanged
    ingest = read_study(folder, reference=reference, code_version=code_version, fingerprint=fingerprint)
    after = file_stamps(folder)  # a file copied into the landing while read: the first part loaded with no issue
    changed = sorted(name for name in before.keys() | after.keys()
                     if before.get(name) != after.get(name) and _is_input(name, ingest.inputs))
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        ingest.issues.error("file_changed", f"{changed[0]}{more} changed while the study was read: still being "
                            "copied or written? Nothing of this read is loaded; build again once the files are "
                            "complete", file=changed[0])
    attempt = {ATTEMPT_FILES: files_digest(before), ATTEMPT_CODE: code_version,
               ATTEMPT_REFERENCE: reference.fingerprint, **(run or {})}
    return load_study(lake, ingest, keep_counts=keep_counts, attempt=attempt)


def _is_input(name: str, inputs: frozenset[str] | None) -> bool:
    """Whether the read depended on the file ``name`` (relative to the study folder): one of ``inputs`` or under
    one of them (a 10x folder); every file when the inputs are unknown. A log the lab keeps appending to, a README
    or a results folder beside the inputs is never opened: its changing does not void the read.
    """
    if inputs is None:
        return True
    path = Path(name)
    return name in inputs or any(str(parent) in inputs for parent in path.parents)


def unchanged_load(lake: Lake, study_id: str, fingerprint: str) -> StudyLoad | None:
    """The load of a study whose last load was good and had ``fingerprint`` (a failed load stores
    ``<fingerprint>:failed``): nothing written, its issues as stored; None when the study must be loaded.
    """
    lake.ensure_tables(INGEST_TABLES)
    if not all(lake.last_fingerprint(t, study_id) == fingerprint for t in ("studies", "ingest_issues")):
        return None
    writes: dict[str, WriteResult] = {t: lake.unchanged(t, study_id) for t in INGEST_TABLES}
    issues = lake.scan("ingest_issues", study_id=study_id).collect()
    return StudyLoad(study_id, True, writes, {}, issues)


def load_study(lake: Lake, ingest: StudyIngest, *, keep_counts: bool = False,
               attempt: Mapping[str, str] | None = None) -> StudyLoad:
    """Validate and commit ``ingest`` into ``lake`` (see the module docstring); never raises for bad input.

    A folder whose study id is invalid writes nothing (there is no partition to write to): ``scan_landing``
    never hands one to a build, and a direct call gets ValueError.

    ``keep_counts``: also build the dense block of the rna_counts rows of the study's first count assay (by name:
    the one sample QC reads first) while they are written, returned as ``counts_block`` when the study was
    committed (the caller keeps it for the stages of its process: ``orchestration.assets.ingest``).
    ``attempt``: metadata of the ``ingest_issues`` commit (:func:`load_folder`'s record of what was read).
    """
    if ingest.valid_id is None:
        raise ValueError("the study folder declares no valid study id: " + "; ".join(map(str, ingest.issues.errors)))
    sid = ingest.study_id
    lake.ensure_tables(INGEST_TABLES)
    if not ingest.issues.has_errors and (unchanged := unchanged_load(lake, sid, ingest.fingerprint)) is not None:
        unchanged.metadata = ingest.metadata
        return unchanged
    staged: dict[str, StagedFiles] = {}
    combined = {table: _combined(table, ingest.tables.get(table, [])) for table in DATA_TABLES}
    # A study the readers already failed commits no data: nothing is staged (it would be discarded), and every
    # table with input is searched for problem rows, so the log still lists each of them.
    failed = ingest.issues.has_errors
    sinks = []
    count_assays = sorted(a for a in ingest.assays.get("rna_counts", []) if a is not None)
    cells = ingest.expected_rows.get("rna_counts")  # known for a plain matrix: too many cells, no block at all
    tee = (_CountTee(count_assays[0], cells=cells or 0)
           if keep_counts and count_assays and not failed and (cells or 0) <= _max_cells() else None)
    for table in [] if failed else DATA_TABLES:
        staged[table] = StagedFiles(table, sid, [], lake)
        for assay, frame in _parts(lake, table, ingest, combined[table]):
            rows = frame.filter(pl.col("problem").is_null())
            files, sink = lake.plan(table, rows, study_id=sid, assay=assay)
            staged[table] += files
            sinks.append(sink)
            if tee is not None and table == "rna_counts" and assay in (tee.assay, None):
                # a table created before assay partitions holds every assay in one part: the block is of one
                sinks.append(tee.sink(rows if assay is not None else rows.filter(pl.col("assay") == tee.assay)))
    try:
        pl.collect_all(sinks)
        # Problem rows need a second pass over the input, skipped when a table got every row its files hold or
        # has no input at all (most tables of a one-assay study)
        suspect = [t for t in combined if ingest.tables.get(t)
                   and (failed or lake.staged_rows(staged[t]) != ingest.expected_rows.get(t))]
        quarantined = _quarantine(combined, suspect)
    except (pl.exceptions.PolarsError, OSError, EOFError, ValueError) as exc:  # input broken past the readers
        for files in staged.values():
            lake.discard(files)
        ingest.issues.error("unreadable_input", f"the study's files could not be read to the end: {exc}",
                            file=str(ingest.folder.name))
        staged, quarantined = {}, []
    issues = pl.concat([ingest.issues.to_frame(), *quarantined]).cast(ISSUE_SCHEMA)
    if staged and not issues.filter(pl.col("severity") == "error").height:
        issues = pl.concat([issues, _emptied(lake, sid, staged)]).cast(ISSUE_SCHEMA)
    ok = bool(staged) and issues.filter(pl.col("severity") == "error").height == 0
    failures: dict[str, list[str]] = {}
    writes = {}
    if ok:
        commit = commit_tables(lake, staged, study_id=sid, fingerprint=ingest.fingerprint)
        writes, failures = commit.writes, commit.failures
        ok = commit.ok
        issues = pl.concat([issues, _contract_issues(sid, failures)]).cast(ISSUE_SCHEMA)
    else:
        for files in staged.values():
            lake.discard(files)
    fingerprint = ingest.fingerprint if ok else f"{ingest.fingerprint}:failed"
    log = commit_tables(lake, {"ingest_issues": lake.stage("ingest_issues", issues, study_id=sid)}, study_id=sid,
                        fingerprint=fingerprint, metadata=attempt)
    writes |= log.writes
    block = tee.block() if tee is not None and ok else None
    return StudyLoad(sid, ok, writes, failures, issues, ingest.metadata,
                     counts_block=None if block is None or tee is None else (tee.assay, block))


def _emptied(lake: Lake, study_id: str, staged: dict[str, StagedFiles]) -> pl.DataFrame:
    """An error when the load would leave no omics rows for a study published with some."""
    new = sum(lake.staged_rows(staged[t]) for t in DATA_LAYERS if t in staged)
    old = published_rows(lake, study_id) if new == 0 else 0
    if not old:
        return pl.DataFrame(schema=ISSUE_SCHEMA)
    return pl.DataFrame([{
        "study_id": study_id, "file": "study.yaml", "line": None, "column": "assays", "code": "study_would_be_emptied",
        "severity": "error", "record": None,
        "message": f"this load has no rows for any omics table, where the warehouse holds {old:,} for the study; "
                   "nothing was changed. Check the assays of study.yaml (a misspelt key?), or remove the study "
                   f"on purpose with `omicsdw remove {study_id}`"}], schema=ISSUE_SCHEMA)


def _contract_issues(study_id: str, failures: dict[str, list[str]]) -> pl.DataFrame:
    """Table-level contract failures the record-level flags could not locate (keys, dtypes)."""
    return pl.DataFrame([{"study_id": study_id, "file": f"({table})", "line": None, "column": None,
                          "code": "contract_violation", "severity": "error", "message": message, "record": None}
                         for table, messages in failures.items() for message in messages], schema=ISSUE_SCHEMA)


def study_issues(ingest: StudyIngest) -> pl.DataFrame:
    """Every issue of a study without writing anything: the log, each quarantined row and contract violation.

    The same record checks as a build (``omicsdw validate``): what validate passes, build does not reject at a row.
    """
    combined = {table: _combined(table, frames) for table, frames in ingest.tables.items() if frames}
    try:
        quarantined = _quarantine(combined, list(combined))
    except (pl.exceptions.PolarsError, OSError, EOFError, ValueError) as exc:
        ingest.issues.error("unreadable_input", f"the study's files could not be read to the end: {exc}",
                            file=str(ingest.folder.name))
        quarantined = []
    return pl.concat([ingest.issues.to_frame(), *quarantined]).cast(ISSUE_SCHEMA)
