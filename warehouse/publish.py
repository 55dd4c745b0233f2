"""Publish a study: record, in one commit, which files of every table readers see for it; or remove it.

Each stage of a study (ingest, normalise, DE, signatures) commits its own tables; readers see none of it until
:func:`publish_study` checks that the newest commits form one consistent set (every ingest table from the same
load, every derived table computed from that load) and writes the study's ``study_versions`` rows in one Delta
commit. A run killed anywhere before that commit leaves the previous set visible; a run killed after it has
published everything. :func:`remove_study` unpublishes a study first, then empties it in every table.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import polars as pl

from schemas.tables import INGEST_TABLES, PUBLISHED_TABLES, STUDY_TABLES, polars_schema
from warehouse.commit import Commit, commit_frames
from warehouse.lake import INPUTS_KEY, Lake

LEDGER = "study_versions"
REMOVED = "removed"


class InconsistentStudy(RuntimeError):
    """The study's newest commits do not form one load: a stage has not run since its input changed."""


def study_state(lake: Lake, study_id: str) -> pl.DataFrame:
    """One row per published table: its version, the study's files and rows, and the commit's fingerprint.

    Raises :class:`InconsistentStudy` naming the tables whose newest commit is not from the newest load.
    """
    load = lake.last_fingerprint("studies", study_id)
    if load is None:
        raise InconsistentStudy(f"study {study_id!r} has never been loaded")
    stale = []
    rows = []
    for table in PUBLISHED_TABLES:
        commit = lake.last_commit(table, study_id)
        if commit is None:
            stale.append(f"{table} (never written)")
            continue
        # ingest tables carry the load's fingerprint; every derived table the load it was computed from
        source = commit.get("omicsdw.fingerprint") if table in INGEST_TABLES else commit.get(INPUTS_KEY)
        if source != load:
            stale.append(table)
        version, files, n = lake.study_files_and_rows(table, study_id)
        rows.append({"study_id": study_id, "table_name": table, "delta_version": version,
                     "fingerprint": commit.get("omicsdw.fingerprint"), "rows": n, "files": files})
    if stale:
        raise InconsistentStudy(f"study {study_id!r} cannot be published: {', '.join(stale)} not computed from "
                                "its newest load; run every stage of the study (omicsdw build --study "
                                f"{study_id}, or the study_job in Dagster). If the build finds the study unchanged "
                                "and this stays, a table of it is damaged (omicsdw doctor names it): omicsdw remove "
                                f"{study_id}, then build it again")
    return pl.DataFrame(rows, schema={k: v for k, v in polars_schema(LEDGER).items() if k != "published_at"})


def publish_study(lake: Lake, study_id: str) -> Commit:
    """Make the study's newest consistent set of table versions the one the catalog shows (one commit)."""
    state = study_state(lake, study_id)
    fingerprint = hashlib.blake2b(json.dumps(state.drop("delta_version").rows()).encode(),
                                  digest_size=16).hexdigest()
    if lake.last_fingerprint(LEDGER, study_id) == fingerprint:
        return Commit(study_id, {LEDGER: lake.unchanged(LEDGER, study_id)})
    frame = state.with_columns(pl.lit(datetime.now(UTC)).alias("published_at"))
    return commit_frames(lake, [(LEDGER, frame)], tables=[LEDGER], study_id=study_id, fingerprint=fingerprint)


def remove_study(lake: Lake, study_id: str) -> Commit:
    """Remove a study from every table: unpublish it (one commit), then commit an empty partition per table, then
    drop its rows from the cross-study tables (its own gene-set libraries, signature matches naming it).
    """
    commit_frames(lake, [], tables=[LEDGER], study_id=study_id, fingerprint=REMOVED)
    tables = [t for t in STUDY_TABLES if t != LEDGER and lake.exists(t)]
    commit = commit_frames(lake, [], tables=tables, study_id=study_id, fingerprint=REMOVED)
    for group in CROSS_STUDY_COLUMNS:
        kept = []
        for table, columns in group.items():
            if lake.exists(table):
                frame = lake.scan(table).collect()
                naming = pl.any_horizontal([pl.col(c) == study_id for c in columns]).fill_null(False)
                kept.append((table, frame.filter(~naming), frame.filter(naming).height))
        if any(dropped for *_, dropped in kept):  # one commit per table; the next build's fingerprint differs
            done = commit_frames(lake, [(t, f) for t, f, _ in kept], tables=[t for t, *_ in kept], study_id=None,
                                 fingerprint=f"{REMOVED}:{study_id}")
            commit = Commit(study_id, {**commit.writes, **done.writes}, {**commit.failures, **done.failures})
    return commit


CROSS_STUDY_COLUMNS = ({"gene_sets": ("study_id",), "gene_set_members": ("study_id",)},
                       {"signature_matches": ("query_study_id", "target_study_id")})
"""Cross-study tables and the columns naming a study, by commit group (the registry's two tables go together)."""


def published_rows(lake: Lake, study_id: str) -> int:
    """Rows the study has in the published omics tables (0 when never published or removed)."""
    if not lake.exists(LEDGER):
        return 0
    ledger = lake.scan(LEDGER, study_id=study_id).filter(pl.col("table_name").is_in(list(DATA_LAYERS)))
    return int(ledger.select(pl.col("rows").sum()).collect().item() or 0)


DATA_LAYERS = ("rna_counts", "rna_abundance", "variants", "gene_mutation_status", "copy_number", "cn_segments",
               "protein_abundance", "copy_number_peaks", "copy_number_peak_calls")
"""The omics tables: a load that leaves all of them empty for a study that had rows there is refused."""
