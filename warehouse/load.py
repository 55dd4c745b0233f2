"""Validate and commit one ingested study: every table or none, issues always.

The study's tables are staged together (one polars plan, so an input file is scanned once); rows with a problem
(a parser's, a value check's, or a record-level contract violation) are split off into ``ingest_issues`` (the
quarantine) with their file and line; then :func:`warehouse.commit.commit_tables` checks every staged table
against its pandera contract and commits all of them or none. A study with errors commits its ``ingest_issues``
alone, so the problems are queryable while the previous good version of every other table stays what readers
see. A load that would leave a study with data in no omics table is refused unless the study is removed
explicitly (``omicsdw remove``): a typo in study.yaml never wipes a study. Nor does it shrink one: a load that would
lose samples (or a whole assay) the published version has is held (``study_would_shrink``) unless the build accepts
it (``omicsdw build --accept-shrink STUDY``), and a folder that published one study id and now declares another
(``study_id_changed``), or an id that differs only in case from one the warehouse holds (``duplicate_study_id``),
loads nothing: a typo in ``study_id`` never publishes a second study beside the first.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from schemas.manifest import read_manifest_data, resolve_study_path
from schemas.tables import INGEST_TABLES, polars_schema
from schemas.validate import contract_flags
from transforms.expression.study import SHARED_BLOCK_BYTES, DenseBlock, DenseBlockBuilder
from transforms.ingest.genes import GeneReference
from transforms.ingest.harmonise import quarantine_rows
from transforms.ingest.single_cell import PROFILE_SEPARATOR
from transforms.ingest.study import (
    MANIFEST_NAME,
    StudyIngest,
    declared_study_id,
    file_stamps,
    find_studies,
    load_fingerprint,
    read_study,
    study_id_location,
)
from transforms.issues import ISSUE_SCHEMA, Issue
from warehouse.commit import commit_tables
from warehouse.lake import FINGERPRINT_KEY, STUDY_KEY, Lake, StagedFiles, WriteResult
from warehouse.publish import DATA_LAYERS, LEDGER, REMOVED, published_rows

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
ATTEMPT_FOLDER = "omicsdw.attempt.folder"
"""Key of the same commit holding the study folder's absolute path: which study id each landing folder loaded last
(:func:`study_folders`), so a folder whose ``study_id`` changes is refused (``study_id_changed``)."""


def files_digest(stamps: Mapping[str, tuple[int, int]]) -> str:
    """Digest of a study folder's :func:`file_stamps` (names, sizes, mtimes): moves when any file changes."""
    return hashlib.blake2b(json.dumps(sorted(stamps.items())).encode(), digest_size=16).hexdigest()


def load_folder(lake: Lake, folder: Path, *, reference: GeneReference, code_version: str,
                keep_counts: bool = False, run: Mapping[str, str] | None = None,
                accept_shrink: Collection[str] = ()) -> StudyLoad:
    """Read and load one study folder (:func:`read_study`, then :func:`load_study`), without reading it when its
    files, the gene reference and the code are those of the study's last good load: the read would give the same
    tables, so an unchanged study costs its content hash and a look at two Delta logs, not a parse of every file.
    The attempt's commit of ``ingest_issues`` records what it was made with (:data:`ATTEMPT_FILES`, ...), the
    folder (:data:`ATTEMPT_FOLDER`) and ``run`` (the run's id and launcher, :mod:`warehouse.status`).
    ``accept_shrink``: study ids whose load may lose samples or assays of their published version
    (``omicsdw build --accept-shrink``); any other study's is held (:func:`load_study`).
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
    if ingest.valid_id is not None:
        for issue in identity_issues(lake, ingest.valid_id, folder):
            ingest.issues.add(issue)
    attempt = {ATTEMPT_FILES: files_digest(before), ATTEMPT_CODE: code_version,
               ATTEMPT_REFERENCE: reference.fingerprint, ATTEMPT_FOLDER: _where(folder), **(run or {})}
    return load_study(lake, ingest, keep_counts=keep_counts, attempt=attempt,
                      accept_shrink=ingest.valid_id in accept_shrink)


def _where(folder: Path) -> str:
    """The folder as recorded: its landing with symbolic links resolved (a landing reached through a link and
    through its real path is one folder), its own name kept (a study folder that is a link re-pointed to another
    version of the study is still this folder, so a typo in the new version's ``study_id`` is caught).
    """
    return str(folder.absolute().parent.resolve() / folder.name)


def study_folders(lake: Lake) -> dict[str, str | None]:
    """Every study the lake holds (its newest ``ingest_issues`` commit is no removal) and the folder its newest
    attempt read (None: made before folders were recorded), from the Delta log (cached per process: no data read).
    """
    held: dict[str, str | None] = {}
    seen: set[str] = set()
    for commit in lake.history("ingest_issues") if lake.exists("ingest_issues") else []:
        study, fingerprint = commit.get(STUDY_KEY), commit.get(FINGERPRINT_KEY)
        if study is None or fingerprint is None or study in seen:
            continue
        seen.add(study)
        if fingerprint != REMOVED:
            held[study] = commit.get(ATTEMPT_FOLDER)
    return held


def _newest_fingerprints(lake: Lake, table: str) -> dict[str, str | None]:
    """Study -> fingerprint of its newest commit of ``table`` (:meth:`Lake.last_fingerprint` of every study), read
    in one pass over the table's history: per study it is a scan down to that study's newest commit, and a study
    not rebuilt for many builds sits deep in the log (studies x commits per load, hundreds of loads a build).
    """
    newest: dict[str, str | None] = {}
    for commit in lake.history(table) if lake.exists(table) else []:
        study = commit.get(STUDY_KEY)
        if study is not None and study not in newest:
            newest[study] = commit.get(FINGERPRINT_KEY)
    return newest


def identity_issues(lake: Lake, study_id: str, folder: Path) -> list[Issue]:
    """Errors at the folder's declared ``study_id`` when loading it would put a second study beside one the
    warehouse publishes: an id that differs only in case from a published one (``duplicate_study_id``: on a
    case-insensitive file system their lake partitions and report folders are one folder), or a folder whose last
    attempt loaded another id that is still published (``study_id_changed``: a typo in ``study_id`` published a
    second study and kept the old one), unless a folder beside it declares that id now (the study moved there). A
    deliberate rename removes the old id first (``omicsdw remove OLD``). An id only attempted (failed, never
    published) blocks nothing: fixing the typo of a first load is not refused.
    """
    ledger = _newest_fingerprints(lake, LEDGER)  # one pass: a look-up per study scanned the log once per study
    published = {s: where for s, where in study_folders(lake).items() if s != study_id
                 and ledger.get(s) not in (None, REMOVED)}
    file, line, column = study_id_location(folder)
    after = f"; then `omicsdw remove {study_id}` clears this failed attempt from study_status"
    same_case = sorted(s for s in published if s.lower() == study_id.lower())
    if same_case:
        old = same_case[0]
        return [Issue(file, "duplicate_study_id", "error",
                      f"study id {study_id!r} differs only in case from {old!r}, which the warehouse holds: on a "
                      "case-insensitive file system (macOS, Windows, most network shares) their lake partitions and "
                      f"report folders are one folder, so {study_id!r} is not loaded. The same study: declare "
                      f"{column}: {old}{after}; another study: give it its own id; replacing {old!r}: "
                      f"`omicsdw remove {old}` first", line, column)]
    here = _where(folder)
    renamed = sorted(s for s, where in published.items() if where == here)
    if renamed:  # the old id moved to a folder beside this one (its unchanged load recorded no new folder): no typo
        renamed = [s for s in renamed if s not in find_studies(folder.absolute().parent)]
    if not renamed:
        return []
    old = renamed[0]
    return [Issue(file, "study_id_changed", "error",
                  f"this folder published study {old!r} and its {column} now says {study_id!r}: loading it would "
                  f"publish a second study beside {old!r}, which the warehouse keeps; nothing was loaded. A typo: "
                  f"declare {column}: {old} again{after}. A rename on purpose: `omicsdw remove {old}` first, then "
                  "build", line, column)]


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
               attempt: Mapping[str, str] | None = None, accept_shrink: bool = False) -> StudyLoad:
    """Validate and commit ``ingest`` into ``lake`` (see the module docstring); never raises for bad input.

    A folder whose study id is invalid writes nothing (there is no partition to write to): ``scan_landing``
    never hands one to a build, and a direct call gets ValueError.

    ``keep_counts``: also build the dense block of the rna_counts rows of the study's first count assay (by name:
    the one sample QC reads first) while they are written, returned as ``counts_block`` when the study was
    committed (the caller keeps it for the stages of its process: ``orchestration.assets.ingest``).
    ``attempt``: metadata of the ``ingest_issues`` commit (:func:`load_folder`'s record of what was read).
    ``accept_shrink``: a load that loses samples or assays of the study's published version is committed (with a
    ``study_would_shrink`` warning) instead of held (the same code as an error: :func:`_shrunk`).
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
    if staged and not issues.filter(pl.col("severity") == "error").height:
        issues = pl.concat([issues, _shrunk(lake, ingest, staged, accepted=accept_shrink)]).cast(ISSUE_SCHEMA)
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


SHRINK_TABLES = (*DATA_LAYERS, "samples")
"""Tables whose samples (per assay) a new load of a published study must keep, unless accepted: the omics tables
and the study's sample table."""
SPARSE_TABLES = ("variants", "gene_mutation_status")
"""Tables where a sample has rows only where it has something to report (a variant, a mutated gene): a sample of
the study whose new call set holds no variant (a caller or filter update) loses its rows there, not from the study.
A sample these tables lose is a shrink only if the study's sample table loses it too, or the assay loses all rows."""
_LISTED = 5
"""Sample ids a ``study_would_shrink`` message names (then "and N more")."""


def _sample_sets(frame: pl.LazyFrame) -> dict[str | None, set[str | None]]:
    """Assay -> sample ids of a table's rows (None keys where the table has no such column: a GISTIC peak)."""
    names = frame.collect_schema().names()
    keys = [c for c in ("assay", "sample_id") if c in names]
    found: dict[str | None, set[str | None]] = {}
    for row in frame.select(keys).unique().collect().iter_rows(named=True):
        found.setdefault(row.get("assay"), set()).add(row.get("sample_id"))
    return found


def _regrouped(lost: set[str | None], samples: set[str | None], profiles: set[str | None]) -> set[str | None]:
    """Lost pseudobulk profiles (``<sample>__<cell_type>``) whose parent sample is still one of ``samples`` and
    still has a profile in ``profiles``: cells annotated anew (a cell type renamed, merged or gone from a donor),
    no sample lost.
    """
    def parents(profile: str | None) -> list[str]:
        if profile is None:
            return []
        cuts = [i for i in range(len(profile)) if profile.startswith(PROFILE_SEPARATOR, i)]
        return [profile[:i] for i in cuts if profile[:i] in samples]
    alive = {parent for profile in profiles for parent in parents(profile)}
    return {profile for profile in lost if any(parent in alive for parent in parents(profile))}


def _named(samples: set[str | None]) -> str:
    shown = sorted(s for s in samples if s is not None)
    more = len(shown) - _LISTED
    return ", ".join(shown[:_LISTED]) + (f" and {more} more" if more > 0 else "")


def _shrunk(lake: Lake, ingest: StudyIngest, staged: dict[str, StagedFiles], *, accepted: bool) -> pl.DataFrame:
    """``study_would_shrink`` issues when this load has fewer samples than the study's published version: per
    assay that loses samples in any of :data:`SHRINK_TABLES` (or is gone: a renamed or deleted assay, a glob that
    matches none of its files is already a ``file_missing`` error), then for samples the sample table loses beyond
    those. Errors (the load is held: nothing committed, readers keep the published version) unless ``accepted``
    (then warnings, and the load is committed). A study never published (or removed) has nothing to lose.

    Any lost sample holds the load: removing samples is rare and deliberate, a pattern that matches 1 of 6 files or a
    sample sheet cut short is not, and nothing downstream (a contrast may still fit) would say so.
    """
    sid = ingest.study_id
    if not lake.exists(LEDGER):
        return pl.DataFrame(schema=ISSUE_SCHEMA)
    published = dict(lake.scan(LEDGER, study_id=sid).filter(pl.col("table_name").is_in(list(SHRINK_TABLES)))
                     .select("table_name", "files").collect().iter_rows())
    before: dict[str | None, dict[str, set[str | None]]] = {}  # assay -> table -> samples
    after: dict[str | None, dict[str, set[str | None]]] = {}
    for table, files in published.items():
        if not files:
            continue
        for assay, samples in _sample_sets(lake.scan_files(table, list(files), typed=True)).items():
            before.setdefault(assay, {})[table] = samples
        if table in staged and staged[table].relative_paths:
            for assay, samples in _sample_sets(lake.scan_staged(staged[table])).items():
                after.setdefault(assay, {})[table] = samples
    manifest = ingest.manifest
    layout = manifest.source_layout if manifest is not None else "study_yaml"
    try:
        lines = read_manifest_data(ingest.folder / MANIFEST_NAME)[1] if layout == "study_yaml" else {}
    except Exception:  # read once already by the ingest: a file changed since is reported by file_changed
        lines = {}
    assays = {a.name: (i, a) for i, a in enumerate(manifest.assays)} if manifest is not None else {}
    severity, ending = (("warning", f"accepted (--accept-shrink {sid}): this load replaces the published version")
                        if accepted else
                        ("error", "nothing was changed, readers keep the published version. If the samples were "
                                  f"removed on purpose, build with `omicsdw build --accept-shrink {sid}` (a Dagster "
                                  "run: the run tag omicsdw/accept_shrink: true)"))
    lose, has_no = ("loses", "has no") if accepted else ("would lose", "would have no")
    rows: list[dict[str, object]] = []
    explained: set[str | None] = set()
    for assay in sorted(a for a in before if a is not None):
        old, new = before[assay], after.get(assay, {})
        kept = after.get(None, {}).get("samples", set())  # still samples of the study: no variant is no loss
        lost = set().union(*(samples - new.get(table, set()) - (kept if table in SPARSE_TABLES and new.get(table)
                                                                 else set()) for table, samples in old.items()))
        index, declared = assays.get(assay, (None, None))
        if declared is not None and declared.kind == "sc_rna_counts":
            regrouped = _regrouped(lost, kept, new.get("rna_counts", set()))
            explained |= regrouped  # nor is the profile a loss of the sample table
            lost -= regrouped
        if not lost:
            continue
        explained |= lost
        had = set().union(*old.values()) - {None}
        has = set().union(*new.values()) - {None} if new else set()
        tables = ", ".join(sorted(old))
        if declared is None:
            what = (f"assay {assay!r} ({tables}, {len(had)} sample(s)) is not in this load: was it removed or "
                    "renamed in the manifest?")
            where = {"file": MANIFEST_NAME if layout == "study_yaml" else "meta_study.txt",
                     "line": lines.get("assays"), "column": "assays"}
        else:
            try:
                matched = len(resolve_study_path(ingest.folder, declared.path))
            except (ValueError, OSError):
                matched = 0
            gone = lost - {None}
            what = (f"assay {assay!r} {lose} {len(gone)} of its {len(had)} sample(s) in {tables} "
                    f"({_named(gone)}): {len(has)} sample(s) in this load, {len(had)} in the published version"
                    if gone else f"assay {assay!r} {has_no} rows in {tables}, where the published version "
                    "has some") + (f"; its path {declared.path!r} matches {matched} file(s) (a typo in the "
                                   "pattern? a file moved away?)")
            where = ({"file": MANIFEST_NAME, "line": lines.get(f"assays[{index}].path"),
                      "column": f"assays.{assay}.path"} if layout == "study_yaml" else
                     {"file": declared.path, "line": None, "column": None})
        rows.append({**where, "message": f"{what}; {ending}"})
    old_samples = before.get(None, {}).get("samples", set())
    lost = old_samples - after.get(None, {}).get("samples", set()) - explained
    if lost:
        sheet = manifest.samples if manifest is not None and layout == "study_yaml" else None
        rows.append({"file": sheet or MANIFEST_NAME,
                     "line": None if sheet else lines.get("samples"), "column": None if sheet else "samples",
                     "message": f"the study's sample table {lose} {len(lost)} of its {len(old_samples)} "
                                f"sample(s) ({_named(lost)}); {ending}"})
    return pl.DataFrame([{"study_id": sid, "code": "study_would_shrink", "severity": severity, "record": None,
                          **row} for row in rows], schema=ISSUE_SCHEMA)


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
