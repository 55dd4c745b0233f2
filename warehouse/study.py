"""A study's inputs to a derived stage: its newest load, the manifest it was loaded with, and its rows."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import polars as pl

from schemas.manifest import StudyManifest
from warehouse.lake import Lake
from warehouse.versions import code_fingerprint


class StudyNotLoaded(LookupError):
    """A derived stage ran for a study that has no successful ingest."""


@dataclass(frozen=True)
class StudyInputs:
    """What a derived stage of one study reads: ``load`` is the fingerprint of the newest successful ingest."""

    lake: Lake
    study_id: str
    load: str
    manifest: StudyManifest

    @classmethod
    def of(cls, lake: Lake, study_id: str) -> StudyInputs:
        """The study's newest load and its manifest, read once from its ``studies`` row (not the landing folder)."""
        load = lake.last_fingerprint("studies", study_id)
        row = lake.scan_study("studies", study_id).select("manifest").collect()
        if load is None or row.height == 0:
            raise StudyNotLoaded(f"study {study_id!r} has no successful ingest: run its ingest first")
        return cls(lake, study_id, load, StudyManifest.model_validate_json(row.item()))

    def scan(self, table: str) -> pl.LazyFrame:
        """The study's rows of an ingested table at its newest commit."""
        return self.lake.scan_study(table, self.study_id)

    def fingerprint(self, stage: str, settings: object) -> str:
        """What a stage's output depends on: the load, the stage's settings and the code."""
        state = {"load": self.load, "stage": stage, "settings": settings, "code": code_fingerprint()}
        return hashlib.blake2b(json.dumps(state, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()
