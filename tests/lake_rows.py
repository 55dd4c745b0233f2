"""Write a study's ingested tables straight into a lake, through the one commit path, for tests that skip parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from schemas.manifest import StudyManifest
from schemas.tables import INGEST_TABLES
from warehouse.commit import commit_frames
from warehouse.lake import Lake


def commit_load(lake: Lake, study_id: str, tables: dict[str, pl.DataFrame], *, load: str,
                manifest: dict | None = None) -> None:
    """Commit ``tables`` (without study_id) and the ``studies`` row holding ``manifest`` as one load ``load``;
    every other ingest table of the study is replaced by an empty partition."""
    studies = pl.DataFrame({"study_id": [study_id], "name": [study_id], "description": [None], "organism": ["human"],
                            "reference_genome": ["GRCh38"], "source_layout": ["study_yaml"], "content_hash": [load],
                            "gene_reference": ["test"], "n_samples": [0],
                            "manifest": [StudyManifest(study_id=study_id, name=study_id,
                                                       **(manifest or {})).model_dump_json()],
                            "loaded_at": [datetime.now(UTC)], "gene_reference_fingerprint": ["test"],
                            "code_fingerprint": ["test"]})
    frames = [("studies", studies),
              *((t, f.with_columns(pl.lit(study_id).alias("study_id"))) for t, f in tables.items())]
    every = [t for t in INGEST_TABLES if t != "ingest_issues"]  # a load replaces each ingest table, as load_study
    commit = commit_frames(lake, frames, tables=every, study_id=study_id, fingerprint=load)
    assert commit.ok, commit.failures
