"""Damage a warehouse the ways disks and people do, and follow what ``omicsdw doctor`` says: the warehouse heals."""

from __future__ import annotations

import shutil
from pathlib import Path

from schemas.tables import INGEST_TABLES
from tests.conftest import EXAMPLES
from transforms.ingest.genes import GeneReference
from transforms.ingest.study import read_study
from warehouse.lake import Lake
from warehouse.load import load_study


def test_a_table_folder_moved_aside_is_written_again_by_the_next_load_of_an_unchanged_study(
        tmp_path: Path, reference: GeneReference) -> None:
    lake = Lake(tmp_path / "lake")
    ingest = read_study(EXAMPLES / "airway", reference=reference)
    assert load_study(lake, ingest).ok
    samples = lake.scan("samples", study_id="airway").collect().sort("sample_id")
    assert samples.height == 8  # examples/airway/samples.tsv: 8 rows
    assert all(w.skipped for w in load_study(lake, ingest).writes.values())  # unchanged: nothing written
    shutil.rmtree(lake.uri("samples"))  # doctor's repair of a corrupt log: move the folder aside, build again
    again = load_study(lake, ingest)
    assert again.ok
    assert not again.writes["samples"].skipped
    assert lake.scan("samples", study_id="airway").collect().sort("sample_id").equals(samples)
    assert sorted(again.writes) == sorted(INGEST_TABLES)  # the load is whole: one commit per table, as always
