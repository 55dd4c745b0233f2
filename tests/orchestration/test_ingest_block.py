"""The ingest keeps the dense block of the rna_counts rows it wrote for sample QC and normalisation of the same
run (one process): neither reads rna_counts back, and both write what they write when they read it themselves; a
newer rna_counts commit is read back, never served from the kept block; a run without sample_qc keeps nothing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from orchestration.assets.ingest import ingest_study_tables
from orchestration.assets.normalise import normalised_expression
from orchestration.assets.qc import sample_qc
from orchestration.resources import WarehouseResource
from transforms.expression import study
from warehouse.commit import commit_frames
from warehouse.lake import Lake
from warehouse.study import StudyInputs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STAGES = [ingest_study_tables, sample_qc, normalised_expression]


@pytest.fixture(autouse=True)
def _no_block_kept() -> Iterator[None]:
    study.drop_shared_blocks()
    yield
    study.drop_shared_blocks()


def _count_dense_block_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The value column of every ``dense_block`` read from now on (a block taken from a stage before reads none)."""
    reads: list[str] = []
    read = study.dense_block

    def counted(records, *, value, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(value)
        return read(records, value=value, **kwargs)

    monkeypatch.setattr(study, "dense_block", counted)
    return reads


def _warehouse(tmp_path: Path, example: str) -> WarehouseResource:
    shutil.copytree(EXAMPLES / example, tmp_path / "landing" / example)
    return WarehouseResource(landing_dir=str(tmp_path / "landing"), warehouse_dir=str(tmp_path / "warehouse"))


def _materialize(assets: list, warehouse: WarehouseResource, study_id: str) -> None:
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("studies", [study_id])
        assert dg.materialize(assets, partition_key=study_id, instance=instance,
                              resources={"warehouse": warehouse}).success


@pytest.mark.parametrize("example", ["airway", "pasilla"])
def test_qc_and_normalise_take_the_ingest_count_block_and_write_the_same_tables(tmp_path, monkeypatch, example):
    # airway: featureCounts with lengths, mapped Ensembl ids, a sample map; pasilla: a matrix of unmapped features
    reads = _count_dense_block_reads(monkeypatch)
    shared = _warehouse(tmp_path / "shared", example)
    _materialize(STAGES, shared, example)
    assert reads == []  # neither sample_qc nor normalise read rna_counts back
    # the count block taken by QC, kept on for normalise, taken by it; what is kept is normalise's VST block
    assert [key[0].rsplit("/", 1)[-1] for key in study._shared] == ["rna_vst"]
    monkeypatch.setattr(StudyInputs, "rows_key", lambda self, table: None)  # no sharing at all
    alone = _warehouse(tmp_path / "alone", example)
    _materialize(STAGES, alone, example)
    assert reads == ["count", "count"]
    for table in ("sample_qc", "rna_sample_factors", "rna_normalized", "rna_vst"):
        found, expected = (Lake(Path(w.warehouse_dir) / "lake").scan(table, study_id=example).collect()
                           for w in (shared, alone))
        assert found.height > 0
        assert found.equals(expected), table  # row order included: the same block gives the same frames


def test_a_kept_count_block_is_not_served_once_rna_counts_has_a_newer_commit(tmp_path, monkeypatch):
    warehouse = _warehouse(tmp_path, "airway")
    _materialize([ingest_study_tables, sample_qc], warehouse, "airway")  # QC takes the block and keeps it on
    lake = warehouse.lake()
    key = StudyInputs.of(lake, "airway").rows_key("rna_counts")
    assert key is not None
    assert list(study._shared) == [(*key, "featurecounts")]
    # the study's rna_counts replaced (same rows, every count + 1) after the block was kept
    counts = lake.scan("rna_counts", study_id="airway").collect()
    assert commit_frames(lake, [("rna_counts", counts.with_columns(pl.col("count") + 1.0).drop("study_id"))],
                         tables=["rna_counts"], study_id="airway", fingerprint="edited").ok
    reads = _count_dense_block_reads(monkeypatch)
    _materialize([normalised_expression], warehouse, "airway")
    assert reads == ["count"]  # read back from the newer commit, not the kept block
    factors = lake.scan("rna_sample_factors", study_id="airway").collect().sort("sample_id")
    expected = counts.group_by("sample_id").agg((pl.col("count") + 1.0).sum()).sort("sample_id")
    np.testing.assert_array_equal(factors["library_size"].to_numpy(), expected["count"].to_numpy())


def test_an_ingest_without_sample_qc_in_its_run_builds_and_keeps_no_block(tmp_path, monkeypatch):
    built: list[str] = []
    builder = study.DenseBlockBuilder.__init__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append("block")
        builder(self, *args, **kwargs)

    monkeypatch.setattr(study.DenseBlockBuilder, "__init__", spy)
    _materialize([ingest_study_tables], _warehouse(tmp_path, "airway"), "airway")
    assert built == []
    assert not study._shared
