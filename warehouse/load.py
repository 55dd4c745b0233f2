"""Validate and commit one ingested study: every table or none, issues always.

The study's tables are staged together (one polars plan, so an input file is scanned once), the rows with a
problem are split off into ``ingest_issues`` (the quarantine), every staged table is checked against its
pandera contract, and only if no error was found is each table committed. A study with errors commits its
``ingest_issues`` alone, so the problems are queryable while the previous good version of every other table
stays what readers see.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from schemas.tables import INGEST_TABLES, polars_schema
from schemas.validate import validate_rows
from transforms.harmonise import quarantine_rows
from transforms.ingest import StudyIngest
from transforms.issues import ISSUE_SCHEMA
from warehouse.lake import Lake, StagedFiles, WriteResult

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

    @property
    def errors(self) -> pl.DataFrame:
        return self.issues.filter(pl.col("severity") == "error")


def _combined(table: str, frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    if not frames:
        return pl.LazyFrame(schema=polars_schema(table)).with_columns(pl.lit(None, pl.String).alias("problem"))
    combined = pl.concat(frames, how="diagonal_relaxed") if len(frames) > 1 else frames[0]
    if "problem" not in combined.collect_schema():
        combined = combined.with_columns(pl.lit(None, pl.String).alias("problem"))
    return combined


def load_study(lake: Lake, ingest: StudyIngest) -> StudyLoad:
    """Validate and commit ``ingest`` into ``lake`` (see the module docstring); never raises for bad input."""
    sid = ingest.study_id
    lake.ensure_tables(INGEST_TABLES)
    unchanged = all(lake.last_fingerprint(t, sid) == ingest.fingerprint for t in ("studies", "ingest_issues"))
    if unchanged and not ingest.issues.has_errors:
        writes: dict[str, WriteResult] = {t: lake.unchanged(t, sid) for t in INGEST_TABLES}
        issues = lake.scan("ingest_issues", study_id=sid).collect()
        return StudyLoad(sid, True, writes, {}, issues, ingest.metadata)
    staged: dict[str, StagedFiles] = {}
    combined = {table: _combined(table, ingest.tables.get(table, [])) for table in DATA_TABLES}
    sinks = []
    for table, frame in combined.items():
        staged[table], sink = lake.plan(table, frame.filter(pl.col("problem").is_null()), study_id=sid)
        sinks.append(sink)
    pl.collect_all(sinks)
    # Problem rows need a second pass over the input, skipped when a table got every row its files hold.
    suspect = [t for t, frame in combined.items() if "file" in frame.collect_schema()
               and lake.staged_rows(staged[t]) != ingest.expected_rows.get(t)]
    with tempfile.TemporaryDirectory(prefix="omicsdw-quarantine-") as tmp:
        targets = {t: Path(tmp, f"{t}.parquet") for t in suspect}
        pl.collect_all([quarantine_rows(combined[t]).sink_parquet(targets[t], lazy=True) for t in suspect])
        quarantined = [pl.read_parquet(f) for f in targets.values() if f.exists()]
    issues = pl.concat([ingest.issues.to_frame(), *quarantined]).cast(ISSUE_SCHEMA)
    failures = {}
    for table, files in staged.items():
        found = validate_rows(table, lake.scan_staged(files))
        if found:
            failures[table] = found
    if failures:
        extra = [{"study_id": sid, "file": table, "line": None, "column": None, "code": "contract_violation",
                  "severity": "error", "message": message, "record": None}
                 for table, messages in failures.items() for message in messages]
        issues = pl.concat([issues, pl.DataFrame(extra, schema=ISSUE_SCHEMA)])
    ok = issues.filter(pl.col("severity") == "error").height == 0
    writes = {}
    if ok:
        for table, files in staged.items():
            writes[table] = lake.commit(files, fingerprint=ingest.fingerprint)
    else:
        for files in staged.values():
            lake.discard(files)
    fingerprint = ingest.fingerprint if ok else f"{ingest.fingerprint}:failed"
    writes["ingest_issues"] = lake.commit(lake.stage("ingest_issues", issues, study_id=sid),
                                          fingerprint=fingerprint)
    return StudyLoad(sid, ok, writes, failures, issues, ingest.metadata)


def study_issues(ingest: StudyIngest) -> pl.DataFrame:
    """Every issue of a study without writing anything: the log plus each quarantined row (``omicsdw validate``)."""
    combined = [_combined(table, frames) for table, frames in ingest.tables.items() if frames]
    quarantined = [quarantine_rows(frame) for frame in combined if "file" in frame.collect_schema()]
    rows = pl.collect_all(quarantined) if quarantined else []
    return pl.concat([ingest.issues.to_frame(), *rows]).cast(ISSUE_SCHEMA)
