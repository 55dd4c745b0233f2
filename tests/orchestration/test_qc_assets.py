"""qc.exclude_failed through Dagster: a planted failed library is left out of normalisation and DE, and every table
says so (Dagster metadata, Delta commit metadata, sample_qc.excluded); without the setting nothing changes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import polars as pl
import pytest

import warehouse
from orchestration.assets.normalise import differential_expression_table, normalised_expression
from orchestration.assets.qc import sample_qc, sample_structure_tables
from orchestration.resources import WarehouseResource
from tests.lake_rows import commit_load
from transforms.expression import study
from warehouse.commit import commit_frames
from warehouse.lake import Lake
from warehouse.study import EXCLUDED_KEY, StudyInputs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pasilla"
ASSETS = [sample_qc, normalised_expression, differential_expression_table, sample_structure_tables]
CONTRAST = {"name": "treated_vs_untreated", "factor": "condition", "test": "treated", "reference": "untreated"}


@pytest.fixture(autouse=True)
def _no_block_kept() -> Iterator[None]:
    """Each test starts and ends without a dense block kept between stages (normalise keeps its VST block)."""
    study.drop_shared_blocks()
    yield
    study.drop_shared_blocks()


@pytest.fixture(scope="module")
def pasilla() -> tuple[pl.DataFrame, pl.DataFrame]:
    """rna_counts rows of pasilla (first 3,000 genes) with treated3 thinned to 2% of its reads, and the attributes."""
    wide = pl.read_csv(EXAMPLE / "counts.tsv", separator="\t").head(3000)
    thinned = np.random.default_rng(5).binomial(wide["treated3"].to_numpy(), 0.02)
    counts = (wide.with_columns(pl.Series("treated3", thinned))
              .unpivot(index="gene_id", variable_name="sample_id", value_name="count")
              .select(pl.lit("gene_counts").alias("assay"), "sample_id", pl.lit(None, pl.Int64).alias("gene_id"),
                      pl.col("gene_id").alias("feature_id"), pl.col("count").cast(pl.Float64),
                      pl.lit(None, pl.Float64).alias("length")))
    attributes = (pl.read_csv(EXAMPLE / "samples.tsv", separator="\t").select("sample_id", "condition")
                  .unpivot(index="sample_id", variable_name="attribute", value_name="value")
                  .with_columns(pl.lit("string").alias("value_type")))
    return counts, attributes


def _build(tmp_path: Path, study_id: str, counts: pl.DataFrame, attributes: pl.DataFrame, *,
           exclude_failed: bool, assets: list | None = None) -> tuple[Lake, dg.ExecuteInProcessResult, list[str]]:
    """Load the study, materialise QC, normalise, DE and structure; the lake, the result and the run's warnings."""
    warehouse = WarehouseResource(landing_dir=str(tmp_path / "landing"), warehouse_dir=str(tmp_path / "warehouse"))
    lake = warehouse.lake()
    lake.ensure_tables(["genes"])
    commit_load(lake, study_id, {"rna_counts": counts, "sample_attributes": attributes}, load="v1",
                manifest={"contrasts": [CONTRAST], "qc": {"exclude_failed": exclude_failed}})
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("studies", [study_id])
        result = dg.materialize(assets or ASSETS, partition_key=study_id, instance=instance,
                                resources={"warehouse": warehouse})
        warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    return lake, result, warnings


def _metadata(result: dg.ExecuteInProcessResult, table: str) -> dict[str, object]:
    (event,) = [e for e in result.get_asset_materialization_events()
                if e.materialization.asset_key == dg.AssetKey(table)]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _de(lake: Lake, study_id: str) -> pl.DataFrame:
    return (lake.scan("differential_expression", study_id=study_id).collect()
            .select("feature_id", "base_mean", "log2_fold_change", "pvalue", "padj").sort("feature_id"))


def test_exclude_failed_leaves_the_planted_sample_out_and_says_so(tmp_path, pasilla):
    counts, attributes = pasilla
    lake, result, warnings = _build(tmp_path / "a", "planted", counts, attributes, exclude_failed=True)
    qc = lake.scan("sample_qc", study_id="planted").collect()
    assert qc.filter(pl.col("excluded"))["sample_id"].to_list() == ["treated3"]
    assert "low_library_size" in qc.filter(pl.col("sample_id") == "treated3")["qc_flags"].item()
    for table in ("rna_normalized", "rna_vst", "rna_sample_factors", "sample_embeddings"):
        assert "treated3" not in lake.scan(table, study_id="planted").collect()["sample_id"].to_list(), table
        assert _metadata(result, table)["excluded_samples"] == {"gene_counts": ["treated3"]}
        assert json.loads(lake.last_commit(table, "planted")[EXCLUDED_KEY]) == {"gene_counts": ["treated3"]}
    assert _metadata(result, "differential_expression")["excluded_samples"] == {"gene_counts": ["treated3"]}
    assert json.loads(lake.last_commit("differential_expression", "planted")[EXCLUDED_KEY]) == {
        "gene_counts": ["treated3"]}
    # the catalog's excluded_samples view over these rows lists the sample
    con = duckdb.connect()
    con.register("sample_qc", qc.with_columns(pl.lit("planted").alias("study_id")).to_arrow())
    con.execute((Path(warehouse.__file__).parent / "sql" / "excluded_samples.sql").read_text())
    assert con.sql("SELECT study_id, assay, sample_id FROM excluded_samples").fetchall() == [
        ("planted", "gene_counts", "treated3")]
    named = [w for w in warnings if "'treated3'" in w and "low_library_size" in w]
    assert len(named) == 3  # one per stage after QC: normalise, DE, structure

    # excluded means never there: DE equals the DE of the same study loaded without treated3
    without, _, _ = _build(tmp_path / "b", "without", counts.filter(pl.col("sample_id") != "treated3"),
                        attributes.filter(pl.col("sample_id") != "treated3"), exclude_failed=False)
    expected = _de(without, "without")
    found = _de(lake, "planted")
    assert found["feature_id"].to_list() == expected["feature_id"].to_list()
    for column in ("base_mean", "log2_fold_change", "pvalue", "padj"):  # up to the GLM fits' convergence tolerance
        np.testing.assert_allclose(found[column].to_numpy(), expected[column].to_numpy(), rtol=1e-5)


def test_without_exclude_failed_the_failed_sample_stays_everywhere(tmp_path, pasilla):
    counts, attributes = pasilla
    lake, result, warnings = _build(tmp_path, "kept", counts, attributes, exclude_failed=False)
    qc = lake.scan("sample_qc", study_id="kept").collect()
    assert qc.filter(~pl.col("qc_pass"))["sample_id"].to_list() == ["treated3"]  # flagged, not excluded
    assert not qc["excluded"].any()
    assert lake.scan("rna_vst", study_id="kept").collect()["sample_id"].n_unique() == 7
    for table in ("rna_normalized", "differential_expression", "sample_embeddings"):
        assert "excluded_samples" not in _metadata(result, table)
        assert EXCLUDED_KEY not in lake.last_commit(table, "kept")
    assert not any("excluded" in w for w in warnings)


def _count_dense_block_reads(monkeypatch) -> list[str]:
    """The value column of every ``dense_block`` read from now on (a block taken from a stage before reads none)."""
    reads: list[str] = []
    read = study.dense_block

    def counted(records, *, value, **kwargs):
        reads.append(value)
        return read(records, value=value, **kwargs)

    monkeypatch.setattr(study, "dense_block", counted)
    return reads


@pytest.mark.parametrize("exclude_failed", [False, True])
def test_normalise_and_structure_take_the_blocks_the_stage_before_made_and_write_the_same_tables(
        tmp_path, pasilla, monkeypatch, exclude_failed):
    # one read of rna_counts for QC and normalise in one process; with exclude_failed normalise's rows differ from
    # QC's (treated3 left out), so it must read its own. Normalise keeps the VST values it wrote, under the key of
    # the rna_vst rows its commit made, and structure takes them instead of reading rna_vst back. Either way the
    # same tables as with no sharing at all
    counts, attributes = pasilla
    reads = _count_dense_block_reads(monkeypatch)
    stages = [sample_qc, normalised_expression, sample_structure_tables]
    shared, _, _ = _build(tmp_path / "shared", "s", counts, attributes, exclude_failed=exclude_failed, assets=stages)
    assert reads == ["count"] * (2 if exclude_failed else 1)  # no "vst": structure read nothing
    assert not study._shared  # each block taken by the next stage, or dropped by its other key
    reads.clear()
    monkeypatch.setattr(StudyInputs, "rows_key", lambda self, table: None)
    alone, _, _ = _build(tmp_path / "alone", "s", counts, attributes, exclude_failed=exclude_failed, assets=stages)
    assert reads == ["count", "count", "vst"]
    for table in ("sample_qc", "rna_sample_factors", "rna_normalized", "rna_vst", "sample_embeddings",
                  "sample_clusters"):
        found, expected = (lake.scan(table, study_id="s").collect() for lake in (shared, alone))
        assert found.height > 0
        assert found.equals(expected), table  # row order included: the same block gives the same frames
    vst = shared.scan("rna_vst", study_id="s").collect()["sample_id"]
    assert ("treated3" in vst.to_list()) == (not exclude_failed)


def test_a_kept_vst_block_is_not_served_once_rna_vst_has_a_newer_commit(tmp_path, pasilla, monkeypatch):
    counts, attributes = pasilla
    lake, _, _ = _build(tmp_path, "s", counts, attributes, exclude_failed=False,
                        assets=[sample_qc, normalised_expression])
    key = StudyInputs.of(lake, "s").rows_key("rna_vst")
    assert key is not None
    assert list(study._shared) == [(*key, "gene_counts")]
    # the study's rna_vst replaced (same rows, other values) after normalise kept its block
    vst = lake.scan("rna_vst", study_id="s").collect().with_columns(pl.col("vst") + 1.0)
    assert commit_frames(lake, [("rna_vst", vst.drop("study_id"))], tables=["rna_vst"], study_id="s",
                         fingerprint="edited", inputs="v1").ok
    reads = _count_dense_block_reads(monkeypatch)
    warehouse = WarehouseResource(landing_dir=str(tmp_path / "landing"), warehouse_dir=str(tmp_path / "warehouse"))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("studies", ["s"])
        dg.materialize([sample_structure_tables], partition_key="s", instance=instance,
                       resources={"warehouse": warehouse})
    assert reads == ["vst"]  # read back from the newer commit, not the kept block
    assert not study._shared
