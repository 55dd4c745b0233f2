"""The one commit path: every writer stages its tables, then calls :func:`commit_tables`.

All staged tables of one unit (a study's ingest, its normalised tables, its DE, the gene reference, a removal, a
publication) are checked against their pandera contracts first; only if every one passes is each committed (one
Delta commit per table), else every staged file is discarded and nothing changes. What was written and what
failed come back as one :class:`Commit`, which the Dagster assets turn into materialisations and check results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import polars as pl

from schemas.validate import validate_rows
from warehouse.lake import Lake, StagedFiles, WriteResult


@dataclass
class Commit:
    """Outcome of one unit: per-table writes (empty when nothing was committed) and contract failures."""

    study_id: str | None
    writes: dict[str, WriteResult] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def tables(self) -> list[str]:
        """Every table of the unit, written or failed."""
        return sorted(self.writes.keys() | self.failures.keys())


def commit_tables(lake: Lake, staged: Mapping[str, StagedFiles], *, study_id: str | None, fingerprint: str,
                  inputs: str | None = None, metadata: Mapping[str, str] | None = None) -> Commit:
    """Check every staged table against its contract; commit them all, or discard them all if any fails.

    ``fingerprint`` identifies what the unit was computed from (a re-run with the same one writes nothing);
    ``inputs`` is, for a derived table, the fingerprint of the ingested load it was computed from; ``metadata``
    is added to each Delta commit (e.g. the samples a stage left out).
    """
    failures = {}
    for table, files in staged.items():
        found = validate_rows(table, lake.scan_staged(files), statistics=lake.staged_statistics(files),
                              rows=lake.staged_rows(files))
        if found:
            failures[table] = found
    if failures:
        for files in staged.values():
            lake.discard(files)
        return Commit(study_id, {}, failures)
    return Commit(study_id, {table: lake.commit(files, fingerprint=fingerprint, inputs=inputs, metadata=metadata)
                             for table, files in staged.items()})


def commit_frames(lake: Lake, frames: Iterable[tuple[str, pl.DataFrame | pl.LazyFrame]], *, tables: Iterable[str],
                  study_id: str | None, fingerprint: str, inputs: str | None = None,
                  metadata: Mapping[str, str] | None = None) -> Commit:
    """Stage ``(table, frame)`` pairs file by file, then :func:`commit_tables`.

    Every table in ``tables`` is committed, those without a frame as an empty partition (stale rows vanish).
    """
    names = list(tables)
    lake.ensure_tables(names)
    staged = {table: StagedFiles(table, study_id, [], lake) for table in names}
    try:
        for table, frame in frames:
            if table not in staged:
                raise ValueError(f"{table!r} is not one of the tables this unit writes: {names}")
            staged[table] += (lake.stage(table, frame, study_id=study_id) if isinstance(frame, pl.LazyFrame)
                              else lake.stage_frames(table, [frame], study_id=study_id))
    except BaseException:
        for files in staged.values():
            lake.discard(files)
        raise
    return commit_tables(lake, staged, study_id=study_id, fingerprint=fingerprint, inputs=inputs, metadata=metadata)


def unchanged(lake: Lake, tables: Iterable[str], *, study_id: str | None, fingerprint: str) -> Commit | None:
    """The unit's result without recomputing when every table already holds ``fingerprint``'s output, else None."""
    names = list(tables)
    if all(lake.last_fingerprint(t, study_id) == fingerprint for t in names):
        return Commit(study_id, {t: lake.unchanged(t, study_id) for t in names})
    return None
