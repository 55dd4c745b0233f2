"""A study's inputs to a derived stage: its newest load, the manifest it was loaded with, and its rows.

A study whose ``study.yaml`` says ``qc: exclude_failed: true`` has its failed samples (``sample_qc.excluded``) left
out of the count rows every stage after QC reads (:meth:`StudyInputs.scan` of ``rna_counts``), so normalisation,
DE and everything computed from them (signatures, enrichment, cross-omics, QC structure, feature sets) never see
them. The exclusion is part of each stage's fingerprint, its Delta commit metadata (``omicsdw.excluded_samples``)
and its Dagster metadata (``excluded_samples``): never silent.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import polars as pl

from schemas.manifest import StudyManifest
from warehouse.lake import INPUTS_KEY, Lake
from warehouse.versions import code_fingerprint

EXCLUDED_KEY = "omicsdw.excluded_samples"
"""Delta commit metadata of a derived table: JSON ``{assay: [sample_id, ...]}`` of the samples left out."""
_EXCLUDED_SCHEMA = pl.Schema([("assay", pl.String()), ("sample_id", pl.String()), ("qc_flags", pl.List(pl.String()))])


class StudyNotLoaded(LookupError):
    """A derived stage ran for a study that has no successful ingest (or no sample QC of it when it needs one)."""


@dataclass(frozen=True)
class StudyInputs:
    """What a derived stage of one study reads: ``load`` is the fingerprint of the newest successful ingest.

    ``excluded`` (assay, sample_id, qc_flags) holds the samples the stage leaves out: empty unless the manifest
    says ``qc: exclude_failed: true``.
    """

    lake: Lake
    study_id: str
    load: str
    manifest: StudyManifest
    excluded: pl.DataFrame

    @classmethod
    def of(cls, lake: Lake, study_id: str, *, after_qc: bool = True) -> StudyInputs:
        """The study's newest load and its manifest, read once from its ``studies`` row (not the landing folder).

        ``after_qc``: the stage runs after ``sample_qc`` and honours ``qc.exclude_failed`` (False for QC itself).
        """
        load = lake.last_fingerprint("studies", study_id)
        row = lake.scan_study("studies", study_id).select("manifest").collect()
        if load is None or row.height == 0:
            raise StudyNotLoaded(f"study {study_id!r} has no successful ingest: run its ingest first")
        manifest = StudyManifest.model_validate_json(row.item())
        excluded = pl.DataFrame(schema=_EXCLUDED_SCHEMA)
        if after_qc and manifest.qc.exclude_failed:
            excluded = _failed_samples(lake, study_id, load)
        return cls(lake, study_id, load, manifest, excluded)

    def scan(self, table: str) -> pl.LazyFrame:
        """The study's rows of an ingested table at its newest commit (counts without the excluded samples)."""
        rows = self.lake.scan_study(table, self.study_id)
        if table == "rna_counts" and self.excluded.height:
            rows = rows.join(self.excluded.lazy().select("assay", "sample_id"), on=["assay", "sample_id"],
                             how="anti")
        return rows

    def rows_key(self, table: str) -> tuple[str, ...] | None:
        """What names :meth:`scan`'s rows of ``table`` exactly, for sharing a dense block read from them between
        stages of one process (:func:`transforms.expression.study.shared_dense_block`; sample QC -> normalisation
        for rna_counts, normalisation -> structure for rna_vst): the table's location and Delta id (a table created
        again gets a new one), the version of the study's newest commit and the samples left out. None when the
        study has no rows there. Costs no file listing: it does not grow with the warehouse.
        """
        version = self.lake.study_version(table, self.study_id)
        if version is None:
            return None
        excluded = (self.excluded.select("assay", "sample_id").sort("assay", "sample_id").rows()
                    if table == "rna_counts" else [])
        return (self.lake.uri(table), str(self.lake.delta(table).metadata().id), str(version), self.study_id,
                "excluded:", *(f"{assay}\t{sample}" for assay, sample in excluded))

    @property
    def excluded_samples(self) -> dict[str, list[str]]:
        """Excluded sample ids per assay (empty when nothing is left out)."""
        found: dict[str, list[str]] = {}
        for assay, sample in self.excluded.select("assay", "sample_id").sort("assay", "sample_id").iter_rows():
            found.setdefault(assay, []).append(sample)
        return found

    @property
    def commit_metadata(self) -> dict[str, str]:
        """Delta commit metadata recording the exclusion (none when nothing is left out)."""
        return {EXCLUDED_KEY: json.dumps(self.excluded_samples)} if self.excluded.height else {}

    def exclusion_notes(self) -> list[str]:
        """One sentence per excluded sample, naming its assay and flags (for the run log)."""
        return [f"study {self.study_id!r}: sample {sample!r} of assay {assay!r} excluded (qc.exclude_failed): "
                f"failed {', '.join(flags)}" for assay, sample, flags in self.excluded.iter_rows()]

    def fingerprint(self, stage: str, settings: object) -> str:
        """What a stage's output depends on: the load, the stage's settings, the code and the excluded samples."""
        state = {"load": self.load, "stage": stage, "settings": settings, "code": code_fingerprint()}
        if self.excluded.height:  # absent otherwise, so a study that excludes nothing keeps its fingerprints
            state["excluded"] = self.excluded_samples
        return hashlib.blake2b(json.dumps(state, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def _failed_samples(lake: Lake, study_id: str, load: str) -> pl.DataFrame:
    """The study's ``sample_qc.excluded`` rows, which must come from ``load`` (QC runs before normalisation)."""
    commit = lake.last_commit("sample_qc", study_id)
    if commit is None or commit.get(INPUTS_KEY) != load:
        raise StudyNotLoaded(f"study {study_id!r} declares qc.exclude_failed but has no sample_qc of its newest "
                             "load: materialise sample_qc (group qc) first")
    return (lake.scan_study("sample_qc", study_id).filter(pl.col("excluded"))
            .select("assay", "sample_id", "qc_flags").sort("assay", "sample_id").collect())
